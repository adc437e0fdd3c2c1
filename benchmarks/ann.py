"""Approximate top-k: recall@10 against exact search, queries/s and build time of the ANN
backends in stbir_jax/search/ann.py (FAISS IVF-Flat, IVF-PQ, HNSW; ScaNN), beside FAISS
IndexFlatIP (exact), on synthetic clustered unit-norm embeddings
(stbir_jax.search.ann.synthetic_clustered: N / 100 clusters, rows ~45 degrees from their
centre; the queries are further rows of the same mixture, not gallery rows).

  python benchmarks/ann.py [--sizes 100000:512,1000000:128] [--queries 1000] [--backends ...]
  python benchmarks/ann.py --sizes 10000000:64 --backends ivf_pq --params ivf_pq:m=32
  python benchmarks/ann.py --report results/ann_*.json     # the summary table of finished runs

Each backend is built with its build parameters (stbir_jax.search.ann.DEFAULTS; IVF-PQ rebuilt
with larger codes while its default ones stay short, as `index` does: ann.larger_code), then its
search parameter is swept; the row marked `default` is the value a build would store
(stbir_jax.search.ann.tune: the smallest power of two with recall@10 >= ann.TUNE_RECALL = 0.98 on
256 gallery rows as queries, so that new queries get >= ann.TARGET_RECALL = 0.95). build_s =
training + adding the rows of the last build (not writing); build_total_s adds the tuning and
every earlier try (`tried`: m and the recall it reached). q/s: the whole query batch in one call,
best of 2 (FAISS and ScaNN use both cores). Exact ids come from IndexFlatIP. The load average
before each measurement is recorded (`load1`)."""

import argparse
import json
import os
import tempfile
import time

import numpy as np

import common
from stbir_jax.search import ann

SWEEPS = {
    'ivf_flat': ('nprobe', (1, 2, 4, 8, 16, 32, 64, 128, 256)),
    'ivf_pq': ('nprobe', (1, 4, 16, 64, 256)),
    'hnsw': ('ef_search', (16, 32, 64, 128, 256)),
    'scann': ('leaves_to_search', (4, 8, 16, 32, 64, 128, 256)),
}


def best_time(fn, reps=2):
  out, best = None, float('inf')
  for _ in range(reps):
    t = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - t)
  return out, best


def index_bytes(backend, index):
  if backend == 'scann':
    return None
  import faiss  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'index.faiss')
    faiss.write_index(index, path)
    return os.path.getsize(path)


def _write(args, rows):
  tag = args.tag or args.sizes.replace(',', '_').replace(':', 'x')
  return common.write_json('ann_' + tag, {'rows': rows, 'queries': args.queries, 'k': args.k})


def report(paths):
  """Per size and backend: the stored default, and the fastest swept setting with recall@10 >=
  0.95, beside exact FAISS flat."""
  rows = [r for path in paths for r in json.load(open(path))['rows']]  # noqa: SIM115
  out, seen = [], set()
  for (n, d) in sorted({(r['n'], r['dim']) for r in rows}):
    here = [r for r in rows if (r['n'], r['dim']) == (n, d)]
    flat = max((r for r in here if r['backend'] == 'flat (exact)'), key=lambda r: r['q_s'])
    out.append({**flat, 'which': 'exact'})
    for backend in ann.BACKENDS:
      mine = [r for r in here if r['backend'] == backend]
      good = [r for r in mine if r['recall'] >= ann.TARGET_RECALL]
      for which, r in (('default', next((r for r in mine if r['default']), None)),
                       ('fastest >= 0.95', max(good, key=lambda r: r['q_s'], default=None))):
        if r is not None and (n, d, r['setting']) not in seen:
          seen.add((n, d, r['setting']))
          out.append({**r, 'which': which})
  cols = ['n', 'dim', 'backend', 'which', 'setting', 'recall', 'recall_indexed', 'q_s', 'build_s',
          'index_mb', 'load1']
  print(common.table(out, cols))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--sizes', default='100000:512,1000000:128', help='rows:dim,...')
  p.add_argument('--queries', type=int, default=1000)
  p.add_argument('--k', type=int, default=10)
  p.add_argument('--backends', default=','.join(ann.BACKENDS))
  p.add_argument('--tag', default='')
  p.add_argument('--params', action='append', default=[], metavar='BACKEND:NAME=INT,...',
                 help="build parameters for one backend, as `index --ann_params` takes them, "
                      "e.g. ivf_pq:m=32 (repeatable)")
  p.add_argument('--report', nargs='*', help='result files to summarise (runs nothing)')
  args = p.parse_args()
  if args.report:
    report(args.report)
    return
  overrides = {}
  for item in args.params:
    backend, sep, text = item.partition(':')
    if not sep or backend not in ann.BACKENDS:
      p.error(f'--params {item!r}: expected BACKEND:name=int,... with BACKEND one of '
              f'{", ".join(ann.BACKENDS)}')
    try:
      overrides[backend] = ann.parse_params(text)
    except ann.AnnError as e:
      p.error(f'--params {item!r}: {e}')
  sizes = [tuple(int(x) for x in item.split(':')) for item in args.sizes.split(',')]
  for n, d in sizes:   # a bad name or m fails here, not after minutes of data and exact search
    for backend, params in overrides.items():
      try:
        ann.params_for(backend, n, d, params)
      except ann.AnnError as e:
        p.error(f'--params for {n}:{d}: {e}')
  import faiss  # pylint: disable=g-import-not-at-top
  k, nq = args.k, args.queries
  rows = []
  for n, d in sizes:
    data = ann.synthetic_clustered(n + nq, d, seed=0)
    gallery, queries = data[:n], np.ascontiguousarray(data[n:])
    del data
    flat = faiss.IndexFlatIP(d)
    flat.add(gallery)
    load = common.loadavg()
    (_, truth), flat_s = best_time(lambda f=flat, q=queries: f.search(q, k))
    base = {'n': n, 'dim': d, 'backend': 'flat (exact)', 'setting': '-', 'recall': 1.0,
            'q_s': nq / flat_s, 'build_s': 0.0, 'index_mb': gallery.nbytes / 2**20,
            'load1': load[0], 'default': ''}
    rows.append(base)
    print(common.table([base], list(base)), flush=True)
    del flat
    probe = ann.recall_probe(gallery, k)   # the indexed rows tuning probes, with their exact top k
    for backend in args.backends.split(','):
      params = ann.params_for(backend, n, d, overrides.get(backend))
      key, values = SWEEPS[backend]
      tried, start = [], time.perf_counter()
      while True:   # as a build does: IVF-PQ's codes grow while tuning stays short (larger_code)
        t = time.perf_counter()
        if backend == 'scann':
          index = ann.build_scann(gallery, params)
        else:
          index = ann.new_index(backend, ann.training_sample(gallery, params), params)
          index.add(gallery)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        params, tuned = ann.tune(backend, index, gallery, params)   # the default a build stores
        print(f'{backend}: tuned {key}={params[key]} in {time.perf_counter() - t:.1f} s: '
              f'recall@{k} {tuned["recall"]:.3f} on indexed rows', flush=True)
        m = ann.larger_code(backend, d, params, tuned['recall'], overrides.get(backend))
        if m is None:
          break
        tried.append(f'm={params["m"]}:{tuned["recall"]:.3f}')
        print(f'{backend}: rebuilding with m={m}', flush=True)
        params = ann.params_for(backend, n, d, {**overrides.get(backend, {}), 'm': m})
      build_total_s = time.perf_counter() - start
      size = index_bytes(backend, index)
      for value in sorted(set(values) | {params[key]}):
        if backend == 'scann' and value > params['num_leaves']:
          continue
        search_params = dict(params, **{key: value})
        ann.set_search_params(backend, index, search_params)
        load = common.loadavg()
        (_, found), s = best_time(lambda b=backend, i=index, q=queries, sp=search_params,
                                  g=gallery: ann.search(b, i, q, k, sp, embeddings=g))
        row = {'n': n, 'dim': d, 'backend': backend,
               'setting': ' '.join(f'{a}={b}' for a, b in search_params.items()),
               'recall': ann.recall_at_k(found, truth),
               # what tuning sees: indexed rows as queries (ann.TUNE_RECALL says why it differs)
               'recall_indexed': ann.estimate_recall(backend, index, gallery, search_params,
                                                     probe=probe)['recall'],
               'q_s': nq / s, 'build_s': build_s,
               # every try's build and tuning where IVF-PQ's codes grew: what a user waits
               'build_total_s': build_total_s, 'tried': ' '.join(tried),
               'index_mb': (size or 0) / 2**20, 'load1': load[0],
               'default': 'default' if value == params[key] else ''}
        rows.append(row)
        _write(args, rows)   # after every row: a long run leaves what it measured
        print(common.table([row], list(row)), flush=True)
      del index
  print(f'recall@{k} vs exact, {nq} queries in one batch, synthetic clustered embeddings')
  print(common.table(rows, list(dict.fromkeys(c for r in rows for c in r))))
  print('wrote', _write(args, rows))


if __name__ == '__main__':
  main()
