"""Test setup: the repo root on sys.path (for `configs`), quiet TensorFlow, CPU only, and XLA
flags that make the tests' many compiles cheaper (tests/_xla.py)."""

import os
import sys

import _xla

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ['XLA_FLAGS'] = _xla.flags()   # read when jax first starts its backend, after this
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

