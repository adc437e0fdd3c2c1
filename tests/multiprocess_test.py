"""Two processes (jax.distributed, gloo collectives) x 2 CPU devices each train and evaluate the
smoke config exactly like one process with 4 devices: same mesh, same global batches, so the same
params (to a fraction of one Adam step) and the same eval results.

This runs the multi-host paths for real: process-sharded train and eval data, global arrays built
from process-local rows, metadata gathered in the embeddings' row order, and orbax checkpoints
that every process writes into one shared workdir.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import _xla
from configs import base

# Three training runs (two of them side by side) in subprocesses: minutes on a small CPU.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = 4   # global devices in both setups
STEPS = 6
TIMEOUT = 600
# Adam epsilon: large enough that the update is Lipschitz in the gradient (|d update / d g| <=
# lr / eps), so reduction-order differences in the gradients cannot flip a near-zero gradient's
# step of +-lr (see tests/multidevice_test.py).
EPS = 1e-2

# argv: process_id num_processes port data_dir workdir results_json
WORKER = textwrap.dedent('''
  import json, sys
  import jax
  pid, nproc, port = (int(a) for a in sys.argv[1:4])
  data_dir, workdir, out = sys.argv[4:7]
  if nproc > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=nproc,
                               process_id=pid, initialization_timeout=120)
  assert jax.process_count() == nproc and jax.device_count() == __DEVICES__, jax.devices()
  from configs import base
  from stbir_jax import eval_sections, train
  config = base.get_config('smoke')
  config.data.data_dir = data_dir
  config.train.num_steps = __STEPS__
  eval_sections.add_section(config, 'robustness')  # degradations of global query batches
  config.optim.eps = __EPS__
  results = train.train_and_evaluate(config, workdir)
  with open(out, 'w') as f:
    json.dump({k: float(v) for k, v in results.items()}, f)
  if nproc > 1:
    jax.distributed.shutdown()
''').replace('__DEVICES__', str(DEVICES)).replace('__STEPS__', str(STEPS)).replace(
    '__EPS__', repr(EPS))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(pid, nproc, port, data_dir, workdir, out, log):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3',
             XLA_FLAGS=_xla.flags(DEVICES // nproc))
  args = [str(a) for a in (pid, nproc, port, data_dir, workdir, out)]
  return subprocess.Popen([sys.executable, '-c', WORKER, *args], cwd=ROOT, env=env,
                          stdout=log, stderr=subprocess.STDOUT)


def _run_all(procs_and_logs):
  """Waits for every process, killing all when one fails or outlives the shared deadline (a peer
  stuck in a collective would wait forever); fails showing the failed processes' logs."""
  deadline = time.monotonic() + TIMEOUT
  failed = []
  for i, (proc, _) in enumerate(procs_and_logs):
    try:
      rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      rc = f'timed out after {TIMEOUT}s'
    if rc != 0:
      failed.append((i, rc))
      for other, _ in procs_and_logs:
        if other.poll() is None:
          other.kill()
          other.wait()
  if failed:
    report = []
    for i, rc in failed:
      log = procs_and_logs[i][1]
      log.flush()
      with open(log.name) as f:
        report.append(f'--- process {i} (exit {rc}):\n' + f.read()[-6000:])
    pytest.fail('\n'.join(report))


def _params(workdir, step=STEPS):
  """A checkpoint's params, restored onto this process's one device (the saved 4-device
  shardings do not exist here, so the target gives every array one device)."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata)
  return checkpointer.restore(path, target)['params']


def test_two_processes_match_one_process_with_same_devices(tmp_path):
  data_dir = tmp_path / 'data'
  # One process, 4 devices; it also builds the dataset the two processes then share.
  with open(tmp_path / 'single.log', 'w') as log:
    _run_all([(_start(0, 1, 0, data_dir, tmp_path / 'single', tmp_path / 'single.json', log),
               log)])
  port = _free_port()
  logs = [open(tmp_path / f'multi{p}.log', 'w') for p in range(2)]
  try:
    _run_all([(_start(p, 2, port, data_dir, tmp_path / 'multi', tmp_path / f'multi{p}.json',
                      logs[p]), logs[p]) for p in range(2)])
  finally:
    for log in logs:
      log.close()

  single = json.loads((tmp_path / 'single.json').read_text())
  multi = [json.loads((tmp_path / f'multi{p}.json').read_text()) for p in range(2)]
  assert 'shoes/sketch+text/acc@1' in single and 'shoes/severe/sketch/mAP' in single, single
  assert multi[0] == multi[1]  # every process computes the same (global) results
  assert multi[0].keys() == single.keys()
  for k in single:
    assert multi[0][k] == pytest.approx(single[k], abs=1e-6), k
  assert json.loads((tmp_path / 'multi' / 'results.json').read_text()) == multi[0]  # process 0's
  # The shared workdir holds one checkpoint written by both processes together: each wrote its
  # own array shards and data-iterator state, and the whole restores (below).
  step = tmp_path / 'multi' / 'checkpoints' / str(STEPS)
  assert {'ocdbt.process_0', 'ocdbt.process_1'} <= set(os.listdir(step / 'state'))
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(os.listdir(step / 'data'))

  a, b = _params(tmp_path / 'single'), _params(tmp_path / 'multi')
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(leaves_a, leaves_b, strict=True))
  # Cross-process all-reduces (gloo) may sum in another order than the in-process ones: equal to
  # float rounding, which EPS keeps from growing into whole Adam steps.
  assert diff <= 1e-5, diff
  # ... and the runs did train: equality of params that never moved would prove nothing.
  leaves_step_2 = jax.tree.leaves(_params(tmp_path / 'single', 2))
  moved = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
              for x, y in zip(leaves_a, leaves_step_2, strict=True))
  assert moved > base.get_config('smoke').optim.lr, moved
