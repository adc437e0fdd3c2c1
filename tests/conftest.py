"""Test setup: the repo root on sys.path (for `configs`), quiet TensorFlow, CPU only, and XLA
flags that make the tests' many compiles cheaper (tests/_xla.py)."""

import os
import sys

import pytest

import _xla

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ['XLA_FLAGS'] = _xla.flags()   # read when jax first starts its backend, after this
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_collection_modifyitems(items):
  """With `--dist loadgroup` (pyproject's addopts), the tests of a module that share a
  module-scoped fixture run in one xdist worker, so the fixture (often a training run of
  minutes) is built once, not once in each worker."""
  for item in items:
    info = getattr(item, '_fixtureinfo', None)
    defs = getattr(info, 'name2fixturedefs', {})
    if any(d and d[-1].scope == 'module' for d in defs.values()):
      item.add_marker(pytest.mark.xdist_group(item.module.__name__))
