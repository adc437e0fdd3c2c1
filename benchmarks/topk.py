"""Exact top-k retrieval queries/s: stbir_jax.retrieval.top_k_jax vs FAISS IndexFlatIP, over
galleries of 10k, 100k and 1M random unit-norm 512-d float32 embeddings; identical ids asserted
(ties aside); peak extra resident memory of each search.

  /work/venv/bin/python benchmarks/topk.py [--quick] [--queries 256] [--k 10]
  python benchmarks/topk.py --sizes 1000000,3000000 --ours_only   # memory at scale, no FAISS

FAISS's index.add (a copy of the gallery) is timed separately and not in queries/s; ours has no
index. The gallery is 64-byte aligned, as search's load_index gives it, so ours reads it in place;
`ours_staged` (below 1M rows) is ours on an unaligned copy, whose chunks are copied into aligned
buffers first. Memory: VmHWM - VmRSS after resetting the peak (/proc/self/clear_refs), per search.
"""

import argparse
import time

import faiss
import numpy as np

import common
from stbir_jax import retrieval


def _status(key):
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(key):
        return int(line.split()[1]) * 1024
  return 0


def peak_extra_bytes(fn):
  """(result, peak resident bytes above the resident size at the call)."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
  except OSError:
    pass
  base = _status('VmRSS')
  out = fn()
  return out, max(0, _status('VmHWM') - base)


def unit(rng, n, d):
  """(n, d) random unit rows, 64-byte aligned as search's load_index gives them."""
  x = retrieval.aligned_empty((n, d))
  rng.standard_normal((n, d), dtype=np.float32, out=x)
  x /= np.linalg.norm(x, axis=1, keepdims=True)   # in place: 1M x 512 is 2 GB per copy
  return x


def misaligned_view(x):
  """A copy of x whose data starts 16 bytes past a 64-byte boundary, like a plain numpy array:
  top_k_jax stages its chunks through aligned buffers instead of reading it in place."""
  flat = retrieval.aligned_empty((x.size + 4,))[4:]
  flat[:] = x.ravel()
  return flat.reshape(x.shape)


def same_topk(a_ids, b_ids, a_s, b_s, tol=1e-5):
  """Ids equal, except where the scores tie (within tol) at the swapped positions."""
  bad = 0
  for i in range(len(a_ids)):
    if np.array_equal(a_ids[i], b_ids[i]):
      continue
    # Ties aside: the two id lists must agree on every score not tied with the k-th score.
    kth = min(a_s[i, -1], b_s[i, -1])
    ka = set(a_ids[i][a_s[i] > kth + tol])
    kb = set(b_ids[i][b_s[i] > kth + tol])
    if ka != kb or not np.allclose(a_s[i], b_s[i], atol=tol):
      bad += 1
  return bad


def measure_ours(queries, gallery, k: int, reps: int) -> dict:
  """--ours_only: ours alone (FAISS's copy of the gallery would double the memory)."""
  (q, d), n = queries.shape, len(gallery)
  search = lambda: retrieval.top_k_jax(queries, gallery, k)
  t = time.perf_counter()
  search()  # compile
  first_s = time.perf_counter() - t
  load = common.wait_for_quiet()
  timings = common.interleaved({'ours': search}, reps=reps, warmup=0)
  _, ours_mem = peak_extra_bytes(search)
  r = {'gallery': n, 'queries': q, 'k': k, 'dim': d, 'timings': timings,
       'load': load, 'ours_first_call_s': first_s,
       'ours_queries_per_s': q / timings['ours']['median_s'],
       'ours_peak_extra_mb': ours_mem / 2**20,
       'gallery_mb': gallery.nbytes / 2**20}
  print(f'N={n}: ours {q / timings["ours"]["median_s"]:.1f} q/s, peak extra '
        f'{ours_mem / 2**20:.0f} MB', flush=True)
  return r


def measure_ours_and_faiss(queries, gallery, k: int, reps: int, staged: bool = True) -> dict:
  """Ours and FAISS IndexFlatIP, interleaved; their top-k ids must agree (ties aside). With
  `staged`, also ours on an unaligned copy of the gallery (chunks staged, not read in place)."""
  (q, d), n = queries.shape, len(gallery)
  t = time.perf_counter()
  index = faiss.IndexFlatIP(d)
  index.add(gallery)
  faiss_add_s = time.perf_counter() - t
  t = time.perf_counter()
  retrieval.top_k_jax(queries, gallery, k)  # compile
  ours_first_s = time.perf_counter() - t
  contenders = {'ours': lambda: retrieval.top_k_jax(queries, gallery, k),
                'faiss': lambda: index.search(queries, k)}
  if staged:
    unaligned = misaligned_view(gallery)
    contenders['ours_staged'] = lambda: retrieval.top_k_jax(queries, unaligned, k)
  load = common.wait_for_quiet()
  timings = common.interleaved(contenders, reps=reps)
  (js, ji), ours_mem = peak_extra_bytes(lambda: retrieval.top_k_jax(queries, gallery, k))
  (fs, fi), faiss_mem = peak_extra_bytes(lambda: index.search(queries, k))
  mismatches = same_topk(ji, fi, js, fs)
  assert mismatches == 0, f'{mismatches} of {q} queries differ beyond ties at N={n}'
  r = dict(gallery=n, queries=q, k=k, dim=d, timings=timings, load=load,
           faiss_add_s=faiss_add_s, ours_first_call_s=ours_first_s,
           ours_queries_per_s=q / timings['ours']['median_s'],
           faiss_queries_per_s=q / timings['faiss']['median_s'],
           ours_peak_extra_mb=ours_mem / 2**20, faiss_peak_extra_mb=faiss_mem / 2**20,
           gallery_mb=gallery.nbytes / 2**20, faiss_index_mb=gallery.nbytes / 2**20,
           identical_ids_queries=int(np.sum(np.all(ji == fi, axis=1))),
           mismatches_beyond_ties=mismatches)
  r['ratio_ours_over_faiss'] = r['ours_queries_per_s'] / r['faiss_queries_per_s']
  if staged:
    r['ours_staged_queries_per_s'] = q / timings['ours_staged']['median_s']
    r['ratio_staged_over_faiss'] = r['ours_staged_queries_per_s'] / r['faiss_queries_per_s']
  print(f'N={n}: ours {r["ours_queries_per_s"]:.1f} q/s, '
        f'faiss {r["faiss_queries_per_s"]:.1f} q/s', flush=True)
  return r


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--quick', action='store_true')
  p.add_argument('--queries', type=int, default=256)
  p.add_argument('--k', type=int, default=10)
  p.add_argument('--sizes', default='10000,100000,1000000')
  p.add_argument('--dim', type=int, default=512)
  p.add_argument('--ours_only', action='store_true',
                 help='no FAISS (its copy of the gallery would double the memory): ours only')
  args = p.parse_args()
  faiss.omp_set_num_threads(common.TORCH_THREADS)
  rng = np.random.default_rng(0)
  d, q, k = args.dim, args.queries, args.k
  queries = unit(rng, q, d)
  results = []
  for n in map(int, args.sizes.split(',')):
    gallery = unit(rng, n, d)
    reps = 2 if (args.quick or n >= 1_000_000) else 5
    if args.ours_only:
      results.append(measure_ours(queries, gallery, k, reps))
    else:  # the unaligned copy would add 2 GB at 1M rows
      results.append(measure_ours_and_faiss(queries, gallery, k, reps, staged=n < 1_000_000))
    del gallery  # 2 GB at 1M rows: freed before the next size is drawn
  if args.ours_only:
    rows = [{'gallery': r['gallery'], 'ours_q_s': r['ours_queries_per_s'],
             'ours_ms': 1e3 * r['timings']['ours']['median_s'],
             'ours_extra_mb': r['ours_peak_extra_mb'], 'gallery_mb': r['gallery_mb'],
             'load1': r['load']['load_before_measuring'][0],
             'quiet': common.quiet_samples(r['timings'])} for r in results]
  else:
    rows = [dict(gallery=r['gallery'], ours_q_s=r['ours_queries_per_s'],
                 faiss_q_s=r['faiss_queries_per_s'], ratio=r['ratio_ours_over_faiss'],
                 staged_ratio=r.get('ratio_staged_over_faiss', float('nan')),
                 ours_ms=1e3 * r['timings']['ours']['median_s'],
                 faiss_ms=1e3 * r['timings']['faiss']['median_s'],
                 ours_extra_mb=r['ours_peak_extra_mb'], faiss_extra_mb=r['faiss_peak_extra_mb'],
                 gallery_mb=r['gallery_mb'], ids_equal=f'{r["identical_ids_queries"]}/{q}',
                 load1=r['load']['load_before_measuring'][0],
                 quiet=common.quiet_samples(r['timings'])) for r in results]
  print(f'Exact top-{k}, {q} queries x {d}-d float32 (median of interleaved reps)')
  print(common.table(rows, list(rows[0])))
  tag = '' if args.sizes == p.get_default('sizes') else '_' + args.sizes.replace(',', '_')
  tag += ('_ours_only' if args.ours_only else '') + (f'_d{d}' if d != 512 else '')
  print('wrote', common.write_json('topk' + tag, dict(results=results, table=rows)))


if __name__ == '__main__':
  main()
