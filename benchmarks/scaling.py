"""Scaling tables: our train step time vs batch size (small config, with the peer alongside),
and exact top-k time vs gallery size (ours and FAISS flat, 256 queries).

  /work/venv/bin/python benchmarks/scaling.py [--quick]
"""

import argparse
import functools

import faiss
import jax
import numpy as np

import common
from stbir_jax import retrieval


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--quick', action='store_true')
  p.add_argument('--batches', default='8,16,32,64')
  p.add_argument('--galleries', default='1000,10000,100000,300000')
  args = p.parse_args()
  common._torch()  # pylint: disable=protected-access
  faiss.omp_set_num_threads(common.TORCH_THREADS)
  reps = 2 if args.quick else 3
  batch_rows = []
  for b in map(int, args.batches.split(',')):
    config = common.our_config('small', b)
    host = common.host_batch('small', b)
    dev = jax.device_put(host)
    step, state, _ = common.our_step(config)
    h = {'s': state}

    # ours reads this iteration's step, state and batch: interleaved() calls it before the next
    # iteration rebinds them.
    def ours():
      h['s'], m = step(h['s'], dev)  # noqa: B023  (called in this iteration)
      jax.block_until_ready(m['loss'])
    peer = common.peer_model('small')
    pstep = common.peer_step(peer)
    pb = common.peer_batch(host)
    t = common.interleaved({'ours': ours, 'peer': functools.partial(pstep, pb)}, reps=reps)
    batch_rows.append(dict(batch=b, ours_step_s=t['ours']['median_s'],
                           ours_ex_s=b / t['ours']['median_s'],
                           peer_step_s=t['peer']['median_s'],
                           peer_ex_s=b / t['peer']['median_s'],
                           ratio=t['peer']['median_s'] / t['ours']['median_s'],
                           load1=common.loadavg()[0]))
    print(batch_rows[-1], flush=True)
  rng = np.random.default_rng(0)
  queries = rng.standard_normal((256, 512), dtype=np.float32)
  gallery_rows = []
  for n in map(int, args.galleries.split(',')):
    gallery = rng.standard_normal((n, 512), dtype=np.float32)
    index = faiss.IndexFlatIP(512)
    index.add(gallery)
    retrieval.top_k_jax(queries, gallery, 10)
    t = common.interleaved({'ours': functools.partial(retrieval.top_k_jax, queries, gallery, 10),
                            'faiss': functools.partial(index.search, queries, 10)}, reps=reps)
    gallery_rows.append(dict(gallery=n, ours_ms=1e3 * t['ours']['median_s'],
                             faiss_ms=1e3 * t['faiss']['median_s'],
                             ours_ns_per_q_item=1e9 * t['ours']['median_s'] / (256 * n),
                             ratio=t['faiss']['median_s'] / t['ours']['median_s'],
                             load1=common.loadavg()[0]))
    print(gallery_rows[-1], flush=True)
  print('\nTrain step vs batch size (small config)')
  print(common.table(batch_rows, list(batch_rows[0])))
  print('\nTop-10 search of 256 queries vs gallery size')
  print(common.table(gallery_rows, list(gallery_rows[0])))
  print('wrote', common.write_json('scaling', dict(batch=batch_rows, gallery=gallery_rows)))


if __name__ == '__main__':
  main()
