"""Approximate nearest-neighbour (ANN) indexes over a search index's embeddings.

Backends (inner product on unit-norm embeddings, like stbir_jax.retrieval's exact search):

  ivf_flat  FAISS IndexIVFFlat: k-means lists, full vectors; `nprobe` lists searched
  ivf_pq    FAISS IndexIVFPQ: the same lists, vectors as `m`-byte product-quantisation codes;
            its candidates are re-ranked exactly from the embeddings (`candidates`)
  hnsw      FAISS IndexHNSWFlat: a proximity graph (`M` links a node, `ef_search` beam)
  scann     Google ScaNN: a k-means tree with anisotropic quantisation, exact re-ordering

Each backend's search parameter (nprobe, ef_search, leaves_to_search) is tuned at build on the
index's own photos: the smallest power of two whose recall@10 against exact search is >= 0.98 there,
so that new queries get >= 0.95 (`tune`: 256 indexed embeddings as queries, each query's own row
left out; TUNE_RECALL says why the margin; a fixed value would be 0.995 at 10^5 and 0.33 at 10^6 on
the synthetic galleries of benchmarks/ann.py). The recall is stored with the index, so the CLI and
the demo can say what they serve. IVF-PQ's re-rank depth (`candidates`) is tuned with it
(RERANK_DEPTHS). Where even that stays short, IVF-PQ is rebuilt with larger codes (larger_code).

Storing, resuming and loading indexes on disk: ann_store.py.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from stbir_jax import retrieval

BACKENDS = ('ivf_flat', 'ivf_pq', 'hnsw', 'scann')
SCANN_HINT = 'pip install scann'
RECALL_QUERIES = 256

# Build parameters (0 = derived from the rows: params_for) and search parameters (0 = tuned at
# build: the smallest power of two whose recall@10 on the indexed rows is >= TUNE_RECALL).
DEFAULTS = {
    'ivf_flat': {'nlist': 0, 'nprobe': 0},
    'ivf_pq': {'nlist': 0, 'm': 0, 'nprobe': 0, 'candidates': 100},
    'hnsw': {'M': 32, 'ef_construction': 64, 'ef_search': 0},
    'scann': {'num_leaves': 0, 'leaves_to_search': 0, 'reorder': 100},
}
SEARCH_PARAMS = {'nprobe', 'candidates', 'ef_search', 'leaves_to_search', 'reorder'}
TUNED = {'ivf_flat': 'nprobe', 'ivf_pq': 'nprobe', 'hnsw': 'ef_search',
         'scann': 'leaves_to_search'}
# A re-ranked backend's recall is bounded twice: by the lists it scans and by how many of its
# approximate best it re-ranks exactly. At 1e7 x 64 IVF-PQ's 8-byte codes put only 0.47 of the
# true top 10 among 100 candidates even with every list scanned, so tuning also deepens the
# re-rank: at each search value it tries the deepest first (recall only grows with depth), and
# keeps the shallowest that reaches the target.
RERANK_DEPTHS = {'ivf_pq': ('candidates', (1, 4, 16))}
# What a default must give on new queries, and what tuning asks of the indexed rows it probes.
# A row that is in the index finds its neighbours more easily than a new query: on clustered
# galleries new queries missed 1.1 - 2.3x as many of the true top 10 (2e5 x 128: IVF-Flat 0.950
# indexed vs 0.932 new at nprobe 32, 0.975 vs 0.965 at 64; 1e6 x 128: HNSW 0.979 vs 0.953 at
# ef_search 32, 0.885 vs 0.812 at 16). Missing at most 2 % on the probe keeps new queries >= 0.95.
TARGET_RECALL = 0.95
TUNE_RECALL = 0.98


class AnnError(ValueError):
  """A bad backend, parameter or stored ANN index; the message names it."""


def faiss_module():
  return retrieval._faiss()  # pylint: disable=protected-access


def scann_ops():
  """ScaNN's numpy API (scann_ops_pybind) without its TensorFlow ops: `import scann` also loads
  a TF op library built for one exact TF version, which fails under any other (and we do not
  use it), so TensorFlow is hidden from ScaNN's import, which it tolerates."""
  if 'scann.scann_ops.py.scann_ops_pybind' in sys.modules:
    return sys.modules['scann.scann_ops.py.scann_ops_pybind']
  saved = sys.modules.get('tensorflow')
  sys.modules['tensorflow'] = None  # `import tensorflow` raises ModuleNotFoundError meanwhile
  try:
    from scann.scann_ops.py import scann_ops_pybind  # pylint: disable=g-import-not-at-top
    return scann_ops_pybind
  except ImportError as e:
    raise AnnError(f'--backend=scann needs the scann package, which is not installed or does '
                   f'not load ({e}): {SCANN_HINT}') from e
  finally:
    if saved is None:
      sys.modules.pop('tensorflow', None)
    else:
      sys.modules['tensorflow'] = saved


def params_for(backend: str, n: int, d: int, overrides: dict | None = None) -> dict:
  """The backend's parameters for n rows of dimension d: DEFAULTS, overrides, derived sizes."""
  if backend not in BACKENDS:
    raise AnnError(f'ANN backend {backend!r}; valid: {", ".join(BACKENDS)}')
  p = dict(DEFAULTS[backend])
  for key, value in (overrides or {}).items():
    if key not in p:
      raise AnnError(f'{backend} has no parameter {key!r}; valid: {", ".join(sorted(p))}')
    p[key] = int(value)
  lists = max(1, min(round(math.sqrt(n)), n // 39 or 1))  # FAISS wants >= 39 rows a list
  if backend in ('ivf_flat', 'ivf_pq') and not p['nlist']:
    p['nlist'] = lists
  if backend == 'ivf_pq' and not p['m']:
    p['m'] = max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)   # ~8 dims a byte
  if backend == 'ivf_pq' and d % p['m']:
    raise AnnError(f'ivf_pq m={p["m"]} must divide the embedding size {d}')
  if backend == 'scann' and not p['num_leaves']:
    p['num_leaves'] = max(1, min(round(math.sqrt(n)), n // 2 or 1))
  return p


def larger_code(backend: str, d: int, params: dict, recall: float,
                overrides: dict | None = None) -> int | None:
  """IVF-PQ's default m (d / 8 bytes a row) is a start, not a fixed choice: where tuning left it
  below TUNE_RECALL and `overrides` did not set m, the next m to rebuild with (the smallest
  divisor of d at least twice as large, up to d / 2 bytes); None where there is none or no need.
  At 1e7 x 64 d / 8 held 0.835 of the top 10 even re-ranking 1,600 candidates over every list,
  d / 2 0.99 with 100 over a third of them (docs/performance.md section 8)."""
  if backend != 'ivf_pq' or recall >= TUNE_RECALL or 'm' in (overrides or {}):
    return None
  return next((m for m in range(2 * params['m'], d // 2 + 1) if d % m == 0), None)


def parse_params(text: str) -> dict:
  """'nprobe=32,ef_search=128' -> {'nprobe': 32, 'ef_search': 128}."""
  out = {}
  for item in filter(None, (s.strip() for s in (text or '').split(','))):
    key, sep, value = item.partition('=')
    if not sep or not value.strip().lstrip('-').isdigit():
      raise AnnError(f'--ann_params item {item!r}: expected name=integer')
    out[key.strip()] = int(value)
  return out


# ----------------------------------------------------------------------------- in memory


def new_index(backend: str, train_rows: np.ndarray, params: dict):
  """An empty FAISS index of `backend`, trained on train_rows (ivf_*); not for scann."""
  faiss = faiss_module()
  d = train_rows.shape[1]
  ip = faiss.METRIC_INNER_PRODUCT
  if backend == 'hnsw':
    index = faiss.IndexHNSWFlat(d, params['M'], ip)
    index.hnsw.efConstruction = params['ef_construction']
    return index
  quantizer = faiss.IndexFlatIP(d)
  if backend == 'ivf_flat':
    index = faiss.IndexIVFFlat(quantizer, d, params['nlist'], ip)
  else:
    index = faiss.IndexIVFPQ(quantizer, d, params['nlist'], params['m'], 8, ip)
  index.cp.niter = 10   # k-means: 10 iterations are enough for the lists' purpose
  if backend == 'ivf_pq':   # and for the codes (FAISS's 25 made training 3x slower)
    index.pq.cp.niter = 10
    index.pq.cp.max_points_per_centroid = 64
  index.train(np.ascontiguousarray(train_rows, np.float32))
  return index


def training_sample(rows: np.ndarray, params: dict, seed: int = 0) -> np.ndarray:
  """Up to 64 rows a list (IVF) and at least 64 a PQ centroid, drawn without replacement."""
  size = 64 * params.get('nlist', 1)
  if 'm' in params:
    size = max(size, 256 * 64)
  if len(rows) <= size:
    return np.asarray(rows, np.float32)
  pick = np.sort(np.random.default_rng(seed).choice(len(rows), size, replace=False))
  return np.asarray(rows[pick], np.float32)


def build_scann(rows: np.ndarray, params: dict):
  ops = scann_ops()
  rows = np.ascontiguousarray(rows, np.float32)
  leaves = min(params['num_leaves'], len(rows))
  searched = max(1, min(params['leaves_to_search'], leaves))
  return (ops.builder(rows, 10, 'dot_product')
          .tree(num_leaves=leaves, num_leaves_to_search=searched,
                # A sample of 64 rows a leaf gave recall 0.66 where all rows gave 0.99 (20k x 512
                # clustered rows, 141 leaves, 1 searched): ScaNN trains its tree on every row.
                training_sample_size=min(len(rows), 1 << 20))
          .score_ah(2, anisotropic_quantization_threshold=0.2)
          .reorder(params['reorder'])
          .build())


def set_search_params(backend: str, index, params: dict) -> None:
  """Sets FAISS's search parameters (0, not tuned yet, searches as 1)."""
  if backend in ('ivf_flat', 'ivf_pq'):
    index.nprobe = max(1, params['nprobe'])
  elif backend == 'hnsw':
    index.hnsw.efSearch = max(1, params['ef_search'])


def raw_search(backend: str, index, queries: np.ndarray, k: int, params: dict):
  """The backend's own top-k: (scores (Q, k), ids (Q, k)); missing results have id -1."""
  queries = np.ascontiguousarray(queries, np.float32)
  if backend == 'scann':
    leaves = max(1, params['leaves_to_search'])
    ids, scores = index.search_batched_parallel(
        queries, final_num_neighbors=k, pre_reorder_num_neighbors=max(k, params['reorder']),
        leaves_to_search=leaves)
    return np.asarray(scores, np.float32), np.asarray(ids, np.int64)
  scores, ids = index.search(queries, k)
  return scores, ids.astype(np.int64)


def rerank(queries: np.ndarray, ids: np.ndarray, embeddings: np.ndarray, k: int):
  """Exact scores of each query's candidate rows, best k first; id -1 candidates never win."""
  valid = ids >= 0
  vectors = np.asarray(embeddings[np.where(valid, ids, 0).ravel()], np.float32)
  scores = np.einsum('qd,qcd->qc', np.asarray(queries, np.float32),
                     vectors.reshape(ids.shape + (embeddings.shape[1],)))
  scores = np.where(valid, scores, -np.inf)
  order = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return (np.take_along_axis(scores, order, axis=1),
          np.where(np.take_along_axis(valid, order, axis=1),
                   np.take_along_axis(ids, order, axis=1), -1))


def search(backend: str, index, queries, k: int, params: dict, *, embeddings=None,
           exact: bool = False):
  """Top-k through the ANN; re-ranked exactly from `embeddings` when `exact` (or for ivf_pq,
  whose codes only approximate the scores) over max(k, candidates) candidates."""
  k = int(k)
  if exact or backend == 'ivf_pq':
    if embeddings is None:
      raise AnnError(f'{backend}: exact re-ranking needs the embeddings')
    candidates = max(k, params.get('candidates', 0) or 10 * k)
    _, ids = raw_search(backend, index, queries, candidates, params)
    return rerank(queries, ids, embeddings, k)
  return raw_search(backend, index, queries, k, params)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
  """Mean fraction of each row of `truth` (Q, k) ids found in the same row of `found`."""
  hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
  return float(np.sum(hits) / truth.size)


def recall_probe(embeddings: np.ndarray, k: int = 10, queries: int = RECALL_QUERIES,
                 seed: int = 0):
  """`queries` indexed rows as queries and their exact top-k, each query's own row left out."""
  n = len(embeddings)
  pick = np.sort(np.random.default_rng(seed).choice(n, min(queries, n), replace=False))
  q = np.asarray(embeddings[pick], np.float32)
  _, truth = retrieval.top_k_jax(q, embeddings, k + 1)
  return pick, q, _without(truth, pick, k)


def _without(ids: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
  rows = zip(ids.tolist(), own, strict=True)
  return np.stack([[i for i in row if i != o][:k] for row, o in rows])


def _probe_recall(backend, index, embeddings, params, probe, k) -> float:
  pick, q, truth = probe
  set_search_params(backend, index, params)
  _, found = search(backend, index, q, k + 1, params, embeddings=embeddings)
  return recall_at_k(_without(found, pick, k), truth)


def estimate_recall(backend: str, index, embeddings: np.ndarray, params: dict, *, k: int = 10,
                    queries: int = RECALL_QUERIES, seed: int = 0, probe=None) -> dict:
  """recall@k against exact search, with `queries` indexed rows as queries (own row left out).
  `probe`: an earlier `recall_probe(embeddings, k, queries, seed)`, so that a sweep over search
  settings runs the exact search once."""
  k = min(k, len(embeddings) - 1)
  if k <= 0:
    return {'recall': 1.0, 'k': k, 'queries': 0}
  if probe is None:
    probe = recall_probe(embeddings, k, queries, seed)
  return {'recall': _probe_recall(backend, index, embeddings, params, probe, k), 'k': k,
          'queries': len(probe[0])}


def tune(backend: str, index, embeddings: np.ndarray, params: dict, *, k: int = 10,
         target: float = TUNE_RECALL, queries: int = RECALL_QUERIES, seed: int = 0):
  """-> (params with TUNED[backend] = the smallest power of two (up to the lists/leaves, or
  4096) whose recall@k on the probe is >= target, that recall dict). Where RERANK_DEPTHS names
  the backend, its re-rank depth is tuned too: the smallest of params' depth x factors that
  reaches the target at that search value (the search value first: it costs most)."""
  key = TUNED[backend]
  limit = {'ivf_flat': params.get('nlist'), 'ivf_pq': params.get('nlist'), 'hnsw': 4096,
           'scann': params.get('num_leaves')}[backend]
  k = min(k, len(embeddings) - 1)
  if k <= 0:
    return dict(params, **{key: 1}), {'recall': 1.0, 'k': k, 'queries': 0}
  probe = recall_probe(embeddings, k, queries, seed)
  depth_key, factors = RERANK_DEPTHS.get(backend, (None, (1,)))
  depths = [params[depth_key] * f for f in factors] if depth_key else [None]

  def measure(value, depth):
    tuned = dict(params, **{key: value})
    if depth_key:
      tuned[depth_key] = depth
    return tuned, _probe_recall(backend, index, embeddings, tuned, probe, k)

  value = 16 if backend == 'hnsw' else 1
  while True:
    value = min(value, limit)
    tuned, recall = measure(value, depths[-1])
    if recall >= target:
      for depth in depths[:-1]:   # the shallowest depth that still reaches the target
        shallower, shallow_recall = measure(value, depth)
        if shallow_recall >= target:
          tuned, recall = shallower, shallow_recall
          break
    if recall >= target or value >= limit:
      return tuned, {'recall': recall, 'k': k, 'queries': len(probe[0])}
    value *= 2


# ----------------------------------------------------------------------------- test data


def synthetic_clustered(n: int, d: int, *, clusters: int = 0, spread: float = 1.0,
                        seed: int = 0, dtype=np.float32) -> np.ndarray:
  """Unit-norm rows drawn around random unit centres (for tests and benchmarks): a row is
  centre + spread * N(0, I/d), normalised, so spread 1 puts a row at ~45 degrees from its
  centre. `clusters` defaults to n / 100."""
  rng = np.random.default_rng(seed)
  clusters = clusters or max(1, n // 100)
  centres = rng.standard_normal((clusters, d), dtype=np.float32)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  out = np.empty((n, d), dtype)
  block = 1 << 16
  for start in range(0, n, block):   # in blocks: a 1e7-row gallery never exists twice
    m = min(block, n - start)
    x = centres[rng.integers(0, clusters, m)]
    x += rng.standard_normal((m, d), dtype=np.float32) * (spread / math.sqrt(d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out[start:start + m] = x
  return out
