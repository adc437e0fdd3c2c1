"""A gallery sharded over a device mesh gives exactly the single-device exact top-k: on 8 fake
CPU devices in one process, and on 2 processes (jax.distributed over gloo) that each hold only
their own rows."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import _xla
from stbir_jax import retrieval

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, DIM, QUERIES, K = 1003, 16, 6, 10


def _gallery_and_queries():
  """Random rows with exact ties (rows 500 and 900 copy row 3; query 0 is row 3). The tied row
  and the queries hold small integers, so every query's score against the tied rows is an exact
  integer whatever the summation order: a GEMM kernel may round a row differently by where it
  sits in a chunk (seen on AVX-512), which would break a tie of random floats by a ulp."""
  rng = np.random.default_rng(0)
  gallery = rng.standard_normal((ROWS, DIM)).astype(np.float32)
  queries = rng.integers(-3, 4, (QUERIES, DIM)).astype(np.float32)
  gallery[3] = rng.integers(-3, 4, DIM)
  gallery[500] = gallery[900] = gallery[3]
  queries[0] = gallery[3]
  return gallery, queries


COMMON = textwrap.dedent('''
  import json, sys
  import numpy as np
  sys.path.insert(0, __TESTS__)
  from sharded_search_test import _gallery_and_queries
''').replace('__TESTS__', repr(os.path.join(ROOT, 'tests')))

EIGHT_DEVICES = COMMON + textwrap.dedent('''
  import jax
  from stbir_jax import sharding
  from stbir_jax.search import sharded as sharded_search
  assert jax.device_count() == 8, jax.devices()
  gallery, queries = _gallery_and_queries()
  out = {}
  for name, shape, chunk_size in (('data8', dict(data=-1, fsdp=1, model=1), 40),
                                  ('2x2x2', dict(data=2, fsdp=2, model=2), 1 << 16)):
    sharded = sharded_search.shard_gallery(sharding.make_mesh(shape), gallery,
                                           chunk_size=chunk_size)
    s, i = sharded.top_k(queries, __K__)
    out[name] = dict(scores=s.tolist(), ids=i.tolist(), rows=sharded.rows.shape[0],
                     chunk=sharded.chunk, devices=len(sharded.rows.sharding.device_set))
  tiny = sharded_search.shard_gallery(sharded_search.default_mesh(), gallery[:3])
  out['tiny'] = tiny.top_k(queries, __K__)[1].tolist()   # k > rows; most devices hold padding
  print(json.dumps(out))
''').replace('__K__', str(K))


def test_eight_fake_devices_match_single_device_exact_top_k():
  env = dict(os.environ, XLA_FLAGS=_xla.flags(8),
             JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, '-c', EIGHT_DEVICES], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  gallery, queries = _gallery_and_queries()
  scores, ids = retrieval.top_k_jax(queries, gallery, K, chunk_size=256)
  assert ids[0, :3].tolist() == [3, 500, 900]   # the tie, lower row first
  for name in ('data8', '2x2x2'):
    assert out[name]['devices'] == 8
    assert out[name]['rows'] >= ROWS and out[name]['rows'] % 8 == 0
    np.testing.assert_array_equal(np.array(out[name]['ids']), ids, err_msg=name)
    np.testing.assert_allclose(np.array(out[name]['scores']), scores, rtol=1e-6, err_msg=name)
  assert out['data8']['chunk'] == 32   # 126 rows a device in 4 equal chunks of <= 40 (padded)
  np.testing.assert_array_equal(np.array(out['tiny']),
                                retrieval.top_k_jax(queries, gallery[:3], K)[1])


# argv: process_id port out_json. Each process has 2 CPU devices; 4 in all.
TWO_PROCESSES = COMMON + textwrap.dedent('''
  import jax
  pid, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                             process_id=pid, initialization_timeout=120)
  assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
  from stbir_jax.search import sharded as sharded_search
  gallery, queries = _gallery_and_queries()

  class Recording:
    """The gallery as an array-like that records which rows this process reads."""
    shape = gallery.shape
    read = []
    def __getitem__(self, rows):
      self.read.append((rows.start, rows.stop))
      return gallery[rows]

  recording = Recording()
  sharded = sharded_search.shard_gallery(sharded_search.default_mesh(), recording,
                                         chunk_size=64)
  s, i = sharded.top_k(queries, __K__)
  with open(out, 'w') as f:
    json.dump(dict(scores=s.tolist(), ids=i.tolist(), read=recording.read), f)
  jax.distributed.shutdown()
''').replace('__K__', str(K))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_each_holding_half_the_rows_match_single_device(tmp_path):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3',
             XLA_FLAGS=_xla.flags(2))
  with contextlib.ExitStack() as stack:
    logs = [stack.enter_context(open(tmp_path / f'p{p}.log', 'w')) for p in range(2)]
    procs = [subprocess.Popen([sys.executable, '-c', TWO_PROCESSES, str(p), str(port),
                               str(tmp_path / f'p{p}.json')], env=env, cwd=ROOT,
                              stdout=logs[p], stderr=subprocess.STDOUT) for p in range(2)]
    deadline = time.monotonic() + 300
    try:
      codes = [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc in procs]
    finally:
      for proc in procs:   # a peer stuck in a collective would wait forever
        if proc.poll() is None:
          proc.kill()
          proc.wait()
  assert codes == [0, 0], '\n'.join((tmp_path / f'p{p}.log').read_text()[-3000:]
                                    for p in range(2))
  gallery, queries = _gallery_and_queries()
  scores, ids = retrieval.top_k_jax(queries, gallery, K, chunk_size=256)
  rows_per_process = 2 * 4 * 63   # 2 devices x 4 equal chunks of 63 (for 251 rows a device)
  for p in range(2):
    out = json.loads((tmp_path / f'p{p}.json').read_text())
    np.testing.assert_array_equal(np.array(out['ids']), ids)
    np.testing.assert_allclose(np.array(out['scores']), scores, rtol=1e-6)
    # Each process read only its own devices' rows (the last one's shard ends in padding).
    first, last = p * rows_per_process, min(ROWS, (p + 1) * rows_per_process)
    assert min(a for a, _ in out['read']) == first, out['read']
    assert max(min(b, ROWS) for _, b in out['read']) == last, out['read']


if __name__ == '__main__':
  sys.exit(pytest.main([__file__, '-q']))
