"""Exact top-k streams the gallery with bounded memory: the peak resident memory a search adds
stays a few chunks, whatever the gallery size (measured, not timed)."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK, DIM, QUERIES = 8192, 64, 64
CHUNK_MB = CHUNK * DIM * 4 / 2**20   # 2 MB of gallery rows (and 2 MB of scores) per chunk

# argv: gallery rows. Prints the search's peak resident bytes above the resident size before it.
PROBE = textwrap.dedent('''
  import sys
  import numpy as np
  from stbir_jax import retrieval
  def status(key):
    with open('/proc/self/status') as f:
      return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))
  n, d, chunk = int(sys.argv[1]), __DIM__, __CHUNK__
  rng = np.random.default_rng(0)
  gallery = rng.standard_normal((n, d), dtype=np.float32)
  queries = rng.standard_normal((__QUERIES__, d), dtype=np.float32)
  retrieval.top_k_jax(queries, gallery[:3 * chunk], 10, chunk_size=chunk)  # compiles the shape
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # resets VmHWM to the current resident size
  base = status('VmRSS')
  scores, ids = retrieval.top_k_jax(queries, gallery, 10, chunk_size=chunk)
  assert ids.shape == (__QUERIES__, 10) and ids.max() < n
  print(status('VmHWM') - base)
''').replace('__DIM__', str(DIM)).replace('__CHUNK__', str(CHUNK)).replace(
    '__QUERIES__', str(QUERIES))


def _peak_extra_mb(rows: int) -> float:
  # A fixed mmap threshold: buffers above 64 KB are mapped and unmapped, so the resident size
  # follows what is alive (glibc's adaptive threshold would keep freed chunks resident).
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, MALLOC_MMAP_THRESHOLD_='65536')
  env.pop('XLA_FLAGS', None)
  out = subprocess.run([sys.executable, '-c', PROBE, str(rows)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120, check=True)
  return int(out.stdout.strip().splitlines()[-1]) / 2**20


def test_exact_top_k_peak_memory_does_not_grow_with_the_gallery():
  small = _peak_extra_mb(12 * CHUNK)    # 24 MB gallery
  large = _peak_extra_mb(96 * CHUNK)    # 192 MB gallery, 8x the rows
  # Before the fix (no wait between chunks) the large search added ~90 MB, the small one ~28 MB:
  # every chunk's copy was queued at once. Now a few chunks' worth, whatever the size.
  assert large < 12 * CHUNK_MB, (small, large)
  assert large < small + 6 * CHUNK_MB, (small, large)
