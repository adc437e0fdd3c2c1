"""Exact resume: a run killed with SIGKILL (or stopped by SIGTERM) and restarted ends with
bit-identical params, optimiser and curriculum state to an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

# Each case runs several training processes end to end: the slow suite (`pytest -m slow`).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 10


def _command(workdir, data_dir):
  return [sys.executable, '-m', 'stbir_jax.main', '--config=configs/base.py:smoke',
          f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
          f'--config.train.num_steps={STEPS}', '--config.train.checkpoint_every=2',
          '--config.train.log_every=1', f'--config.evals.retrieval.every_steps={STEPS}']


def _env():
  return dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')


def _run(workdir, data_dir):
  proc = subprocess.run(_command(workdir, data_dir), cwd=ROOT, env=_env(), capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-5000:]
  return proc


def _state(workdir, step=STEPS):
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  return ocp.StandardCheckpointer().restore(path)


def _assert_identical(a, b):
  import jax  # pylint: disable=g-import-not-at-top
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for x, y in zip(flat_a, flat_b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _interrupt(workdir, data_dir, sig, after_checkpoint):
  """Starts a run, sends `sig` once checkpoint `after_checkpoint` exists, then reruns it."""
  proc = subprocess.Popen(_command(workdir, data_dir), cwd=ROOT, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  marker = os.path.join(workdir, 'checkpoints', str(after_checkpoint))
  deadline = time.time() + 600
  while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert proc.poll() is None, 'the run ended before it could be interrupted'
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  if sig == signal.SIGTERM:
    assert proc.returncode == 0, err[-3000:]
    assert 'after SIGTERM' in err
  else:
    assert proc.returncode == -signal.SIGKILL
  _run(workdir, data_dir)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  root = tmp_path_factory.mktemp('resume')
  data_dir = str(root / 'data')
  _run(str(root / 'straight'), data_dir)
  return root, data_dir, _state(str(root / 'straight'))


def test_sigkill_mid_stage_resumes_bit_identically(reference):
  root, data_dir, expected = reference
  workdir = str(root / 'killed')
  # Checkpoint 4 lies inside the last stage (steps 3..9 of the smoke schedule).
  _interrupt(workdir, data_dir, signal.SIGKILL, after_checkpoint=4)
  _assert_identical(_state(workdir), expected)


@pytest.mark.parametrize('after', [2, 6])
def test_sigkill_at_other_points(reference, after):
  root, data_dir, expected = reference
  workdir = str(root / f'killed_{after}')
  _interrupt(workdir, data_dir, signal.SIGKILL, after_checkpoint=after)
  _assert_identical(_state(workdir), expected)


def test_sigterm_saves_and_resumes(reference):
  root, data_dir, expected = reference
  workdir = str(root / 'terminated')
  _interrupt(workdir, data_dir, signal.SIGTERM, after_checkpoint=2)
  _assert_identical(_state(workdir), expected)
