"""XLA flags of the test processes (set by conftest.py) and of the subprocesses tests start."""

import os

# The tests compile far more than they execute. LLVM without optimisation compiles the smoke
# config's train step about 3x faster, and even step_test's 300-step overfit test costs less CPU
# in all (84 s against 117 s, user + sys, one A/B on this 2-core machine). Numerics are XLA's:
# the HLO passes are the same, only the machine code is less optimised.
COMPILE_FAST = '--xla_backend_optimization_level=0'


def flags(devices: int | None = None) -> str:
  """XLA_FLAGS for a test process, with `devices` fake CPU devices when given; the user's own
  XLA_FLAGS come after ours, so (XLA reading the last of repeated flags) an explicit
  optimisation level of theirs wins."""
  parts = [COMPILE_FAST, os.environ.get('XLA_FLAGS', '')]
  if devices is not None:
    parts.append(f'--xla_force_host_platform_device_count={devices}')
  return ' '.join(p for p in parts if p)
