"""Fakes 8 CPU devices before JAX starts, so pmap code is tested as on a multi-device host."""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests must not share a compilation cache with the user's runs.
os.environ.setdefault("GENJAX_COMPILATION_CACHE", "")
