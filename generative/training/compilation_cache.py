"""The launchers' persistent XLA compilation cache: a rerun or a resume of the same config loads the
executables the first run compiled instead of compiling them again.

Directory, first that is set: the environment variable GENERATIVE_COMPILATION_CACHE ('off', '0'
or '' disables the cache), JAX's own JAX_COMPILATION_CACHE_DIR (left as the user set it), else
$XDG_CACHE_HOME/generative/jax (default ~/.cache/generative/jax). Every executable is cached:
JAX's defaults skip those that compile in under a second and small entries, which on a CPU are
most of a run's. ``enable`` must run before anything compiles (JAX decides once per process).

``CacheCounter`` counts JAX's monitoring events for cache hits and misses, so the loop can say
whether the first train step was loaded or compiled.
"""

import os

import jax
from jax import monitoring

ENV = "GENERATIVE_COMPILATION_CACHE"
OFF = ("off", "0", "")
HIT = "/jax/compilation_cache/cache_hits"
MISS = "/jax/compilation_cache/cache_misses"


def default_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "generative", "jax")


def enable() -> str | None:
    """Turns the persistent cache on (module docstring); returns its directory, None when off."""
    if ENV in os.environ:
        path = os.environ[ENV]
        if path.strip().lower() in OFF:
            return None
    elif os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        path = os.environ["JAX_COMPILATION_CACHE_DIR"]
    else:
        path = default_dir()
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    for option, value in (
        ("jax_persistent_cache_min_compile_time_secs", 0.0),
        ("jax_persistent_cache_min_entry_size_bytes", 0),
    ):
        if option.upper() not in os.environ:  # the user's own setting wins
            jax.config.update(option, value)
    return path


class CacheCounter:
    """Counts persistent-cache hits and misses from the time it is made until `close()`: `hits`,
    `misses`; `summary()` is one line for the log."""

    def __init__(self):
        self.hits = self.misses = 0
        self._listening = True
        monitoring.register_event_listener(self._on_event)

    def _on_event(self, event: str, **kwargs) -> None:
        del kwargs
        if event == HIT:
            self.hits += 1
        elif event == MISS:
            self.misses += 1

    def summary(self) -> str:
        directory = jax.config.jax_compilation_cache_dir
        if not directory:
            return "compilation cache off"
        return f"compilation cache {directory}: {self.hits} loaded, {self.misses} compiled"

    def close(self) -> None:
        if self._listening:
            monitoring.unregister_event_listener(self._on_event)
            self._listening = False
