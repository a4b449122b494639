"""k-diffusion's sampling module without its package: the reference the samplers are checked
against (tests/test_core_samplers_kdiffusion.py) and timed against (benchmarks/gpu_suite.py).

k-diffusion's ``__init__`` imports torchvision and friends, so ``sampling.py`` is loaded alone
under a stub parent package that provides the one helper it takes from ``utils``.
"""

import importlib
import importlib.util
import sys
import types

NEEDS = ("torch", "torchdiffeq", "torchsde", "scipy", "tqdm")


def load_sampling() -> types.ModuleType:
    """k_diffusion/sampling.py as a module; ImportError in one line when it or a need is missing."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        raise ImportError(
            "k-diffusion's sampling module needs `pip install --no-deps k-diffusion==0.1.1.post1` "
            "(README's test command installs it)"
        )
    for needed in NEEDS:
        importlib.import_module(needed)
    package = types.ModuleType("_kdiffusion_stub")
    package.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType("_kdiffusion_stub.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sys.modules.setdefault("_kdiffusion_stub", package)
    sys.modules.setdefault("_kdiffusion_stub.utils", utils)
    path = spec.submodule_search_locations[0] + "/sampling.py"
    module_spec = importlib.util.spec_from_file_location("_kdiffusion_stub.sampling", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
