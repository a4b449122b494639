"""Test setup: 8 host devices for the multi-device tests, set before jax is imported."""

import inspect
import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The launchers' persistent compilation cache stays out of the user's cache directory; tests that
# want it name their own (test_trainer, test_compilation_cache).
os.environ.setdefault("GENERATIVE_COMPILATION_CACHE", "off")


@pytest.fixture(autouse=True)
def _clear_jit_caches_after_float64(request):
    """`with jax.enable_x64(True)` shares jit caches with the float32 code that runs after it in
    the same worker; a method jitted at module level (closed_form's GaussianMixture) could then
    reuse a float64 executable on float32 inputs. Tests of modules that switch to float64 clear
    the caches when they finish, so the order pytest-xdist picks cannot change a result."""
    yield
    if "enable_x64" in inspect.getsource(request.module):
        import jax

        jax.clear_caches()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: a test of a minute or so on 2 cores; run first so the workers finish together",
    )


def pytest_collection_modifyitems(items):
    """The slow tests first (stable order otherwise): with pytest-xdist the long ones then overlap
    the many short ones instead of running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
