"""Parity against a PyTorch reference: `close(name, ours, ref)` asserts a max abs difference <=
TOL and keeps the largest one per name; the module's `report_diffs` fixture prints them when
the module ends (pytest -s), which is where docs/pretrained.md's figures come from."""

import numpy as np
import pytest

TOL = 1e-4
DIFFS = {}   # check name -> max abs diff, over every module that imports this one


def close(name, ours, ref, tol=TOL):
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
  diff = float(np.max(np.abs(ours - ref)))
  DIFFS[name] = max(diff, DIFFS.get(name, 0.0))
  assert diff <= tol, f'{name}: max abs diff {diff:.3g} > {tol}'


@pytest.fixture(scope='module', autouse=True)
def report_diffs():
  """Imported into a test module, prints the diffs its checks recorded when it ends."""
  before = set(DIFFS)
  yield
  for name, diff in sorted(DIFFS.items()):
    if name not in before:
      print(f'max abs diff {name}: {diff:.2e}')
