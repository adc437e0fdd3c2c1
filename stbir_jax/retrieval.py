"""Top-k nearest neighbours by inner product: exact in JAX (default) or with FAISS.

Embeddings are L2-normalised, so the inner product is the cosine similarity the model was
trained with. `top_k(queries, gallery, k)` streams the gallery through the device in chunks of
`chunk_size` rows: each chunk's scores go through `jax.lax.top_k` and are merged with the
running best k, with at most two chunks in flight, so the extra memory stays
O(Q * (chunk + k) + 2 chunks) however large the gallery is (tests/search_test.py measures it),
and every chunk has the same shape (the last one is padded with -inf scores), so it compiles
once. Approximate indexes are in stbir_jax/search/ann.py, a gallery sharded over a device mesh
in stbir_jax/search/sharded.py.
"""

from __future__ import annotations

import functools

import numpy as np

BACKENDS = ('jax', 'faiss')
FAISS_HINT = 'pip install faiss-cpu'


class RetrievalError(ValueError):
  pass


@functools.cache
def _merge_fn(k: int):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  @jax.jit
  def merge(queries, chunk, valid, offset, best_scores, best_index):
    scores = queries @ chunk.T                                   # (Q, C)
    scores = jnp.where(valid[None, :], scores, -jnp.inf)
    kc = min(k, chunk.shape[0])
    s, i = jax.lax.top_k(scores, kc)
    all_s = jnp.concatenate([best_scores, s], axis=1)
    all_i = jnp.concatenate([best_index, i + offset], axis=1)
    # Earlier chunks come first in the concatenation, so ties keep the lower gallery index.
    s, pos = jax.lax.top_k(all_s, k)
    return s, jnp.take_along_axis(all_i, pos, axis=1)

  return merge


def top_k_jax(queries, gallery, k: int, *, chunk_size: int = 65536):
  """Exact top-k of queries (Q, D) against gallery (N, D) -> (scores (Q,k), indices (Q,k))."""
  queries = np.asarray(queries, np.float32)
  gallery = np.asarray(gallery, np.float32)
  n = gallery.shape[0]
  k = min(int(k), n)
  if k <= 0:
    return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
  chunk = -(-n // -(-n // max(1, min(int(chunk_size), n))))  # equal chunks: padding < #chunks
  merge = _merge_fn(k)
  best_s = np.full((len(queries), k), -np.inf, np.float32)
  best_i = np.full((len(queries), k), -1, np.int32)
  previous = None
  for start in range(0, n, chunk):
    part = gallery[start:start + chunk]
    valid = np.ones(chunk, bool)
    if len(part) < chunk:  # same shape for every chunk: one compilation
      valid[len(part):] = False
      part = np.concatenate([part, np.zeros((chunk - len(part), part.shape[1]), np.float32)])
    best_s, best_i = merge(queries, part, valid, np.int32(start), best_s, best_i)
    # Dispatch is asynchronous: without a wait, the loop would queue every chunk's device copy
    # (and its (Q, chunk) scores) at once, so the peak grew with the gallery. Waiting for the
    # previous chunk keeps at most two in flight while still overlapping copy and compute.
    if previous is not None:
      previous.block_until_ready()
    previous = best_s
  return np.asarray(best_s), np.asarray(best_i).astype(np.int64)


def _faiss():
  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise RetrievalError(f'--backend=faiss needs the faiss package, which is not installed: '
                         f'{FAISS_HINT} (or use the default --backend=jax).') from e
  return faiss


def top_k_faiss(queries, gallery, k: int):
  """Same result as top_k_jax with a FAISS exact inner-product index (IndexFlatIP)."""
  faiss = _faiss()
  gallery = np.ascontiguousarray(gallery, np.float32)
  index = faiss.IndexFlatIP(gallery.shape[1])
  index.add(gallery)
  k = min(int(k), gallery.shape[0])
  scores, indices = index.search(np.ascontiguousarray(queries, np.float32), k)
  return scores, indices.astype(np.int64)


def top_k(queries, gallery, k: int, *, backend: str = 'jax', chunk_size: int = 65536):
  """Top-k by inner product with `backend` in BACKENDS; scores descending."""
  if backend == 'jax':
    return top_k_jax(queries, gallery, k, chunk_size=chunk_size)
  if backend == 'faiss':
    return top_k_faiss(queries, gallery, k)
  raise RetrievalError(f'Unknown backend {backend!r}; valid backends: {", ".join(BACKENDS)}')
