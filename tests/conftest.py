"""Fakes 8 CPU devices before JAX starts, so pmap code is tested as on a multi-device host."""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests must not share a compilation cache with the user's runs.
os.environ.setdefault("GENJAX_COMPILATION_CACHE", "")

import chex  # noqa: E402  (after the environment above: chex imports JAX)
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_trace_counter():
    """chex.assert_max_traces counts traces by the test's call stack names and the wrapped
    function's source, so two tests of the same name with the same lambda in different files
    (test_gan's and test_cyclegan's test_step_compiles_once) would add up; each test starts
    from zero."""
    chex.clear_trace_counter()
    yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's caches of compiled programs after each test module. Every XLA:CPU
    executable holds memory maps of its own; one process running the whole suite
    accumulated enough (a test module of the CycleGAN alone: about 10,000) to exceed the
    kernel's vm.max_map_count (65,530 here), and XLA then aborted inside the compiler."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
