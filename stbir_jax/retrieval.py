"""Top-k nearest neighbours by inner product: exact in JAX (default) or with FAISS.

Embeddings are L2-normalised, so the inner product is the cosine similarity the model was
trained with. `top_k(queries, gallery, k)` streams the gallery through the device in chunks of
`chunk_size` rows: each chunk's top k (chunk_top_k, a two-stage selection) is merged with the
running best k, with at most two chunks in flight, so the extra memory stays
O(Q * (chunk + k) + 2 chunks) however large the gallery is (tests/retrieval_memory_test.py
measures it). A gallery that starts on a 64-byte boundary (aligned_empty; np.load with
mmap_mode) is read in place; any other is staged through two aligned chunk buffers.
Approximate indexes are in stbir_jax/search/ann.py, a gallery sharded over a device mesh in
stbir_jax/search/sharded.py.
"""

from __future__ import annotations

import functools

import numpy as np

BACKENDS = ('jax', 'faiss')
FAISS_HINT = 'pip install faiss-cpu'


class RetrievalError(ValueError):
  pass


SELECTION_BLOCK = 32


def chunk_top_k(queries, chunk, k: int, *, valid=None, block: int = SELECTION_BLOCK):
  """Top-k of `queries @ chunk.T` -> (scores, row positions), each (Q, min(k, C)), scores
  descending, ties to the lower position; rows where the (C,) mask `valid` is False never win.
  Traced inside jit. A mask costs a pass over the (Q, C) scores (it keeps XLA CPU from writing
  the product straight into the selection: about 40 % of the matmul's time at C = 16384),
  so callers with no padding pass none.

  Two stages, because XLA CPU's top_k over a whole row costs about a sort of it: the rows are
  cut into blocks of `block`, and the k blocks with the largest maxima hold every top-k row (a
  row outside them is beaten by k block maxima), so only k * block candidates are ranked.
  The chosen blocks are put back in row order, so equal scores keep the lower row.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  scores = queries @ chunk.T    # (Q, C)
  if valid is not None:
    scores = jnp.where(valid[None, :], scores, -jnp.inf)
  q, c = scores.shape
  kc = min(k, c)
  blocks = -(-c // block)
  if blocks <= kc:  # too few blocks for the first stage to discard any
    return jax.lax.top_k(scores, kc)
  scores = jnp.pad(scores, ((0, 0), (0, blocks * block - c)), constant_values=-jnp.inf)
  scores = scores.reshape(q, blocks, block)
  _, top_blocks = jax.lax.top_k(scores.max(axis=2), kc)
  top_blocks = jnp.sort(top_blocks, axis=1)
  candidates = jnp.take_along_axis(scores, top_blocks[:, :, None], axis=1).reshape(q, -1)
  s, j = jax.lax.top_k(candidates, kc)
  return s, jnp.take_along_axis(top_blocks, j // block, axis=1) * block + j % block


def merge_top_k(best_scores, best_index, scores, index, k: int):
  """The top k of a running best and new candidates; the running best comes first, so equal
  scores keep the earlier (lower) gallery row."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  all_s = jnp.concatenate([best_scores, scores], axis=1)
  all_i = jnp.concatenate([best_index, index], axis=1)
  s, pos = jax.lax.top_k(all_s, k)
  return s, jnp.take_along_axis(all_i, pos, axis=1)


@functools.cache
def _merge_fn(k: int):
  import jax  # pylint: disable=g-import-not-at-top

  @jax.jit
  def merge(queries, chunk, offset, best_scores, best_index):
    s, i = chunk_top_k(queries, chunk, k)
    return merge_top_k(best_scores, best_index, s, i + offset, k)

  return merge


# XLA's CPU client uses a numpy buffer in place only when it starts on a 64-byte boundary;
# otherwise every chunk is copied into a fresh buffer: measured 24 ms for a 32 MB chunk, about
# as long as the chunk's matmul. numpy's own allocations are only 16-byte aligned.
ALIGNMENT = 64


def aligned_empty(shape, dtype=np.float32) -> np.ndarray:
  """An uninitialised C-contiguous array whose data starts on an ALIGNMENT-byte boundary."""
  dtype = np.dtype(dtype)
  nbytes = int(np.prod(shape)) * dtype.itemsize
  raw = np.empty(nbytes + ALIGNMENT, np.uint8)
  start = -raw.ctypes.data % ALIGNMENT
  return raw[start:start + nbytes].view(dtype).reshape(shape)


def is_aligned(array: np.ndarray) -> bool:
  return array.ctypes.data % ALIGNMENT == 0 and array.flags.c_contiguous


def equal_chunk(rows: int, chunk_size: int) -> int:
  """The size of the fewest equal chunks of at most about `chunk_size` rows covering `rows`,
  rounded up to whole selection blocks (so chunk_top_k pads nothing): padding stays under one
  block per chunk."""
  number = -(-rows // max(1, min(int(chunk_size), rows)))
  per_chunk = -(-rows // number)
  return -(-per_chunk // SELECTION_BLOCK) * SELECTION_BLOCK if per_chunk > SELECTION_BLOCK \
      else per_chunk


def chunk_bounds(rows: int, chunk_size: int) -> list[tuple[int, int]]:
  """(start, stop) of each chunk top_k_jax scores: equal_chunk rows each, the last one cut into
  its whole selection blocks and the rest (fewer than SELECTION_BLOCK rows), so chunk_top_k never
  pads a chunk's scores: padding a (256, 10,000) block cost about 0.7 ms of a 15 ms search."""
  if rows <= 0:
    return []
  chunk = equal_chunk(rows, chunk_size)
  bounds = [(start, min(start + chunk, rows)) for start in range(0, rows, chunk)]
  start, stop = bounds[-1]
  whole = (stop - start) // SELECTION_BLOCK * SELECTION_BLOCK
  if SELECTION_BLOCK < whole < stop - start:
    bounds[-1:] = [(start, start + whole), (start + whole, stop)]
  return bounds


def top_k_jax(queries, gallery, k: int, *, chunk_size: int = 16384):
  """Exact top-k of queries (Q, D) against gallery (N, D) -> (scores (Q,k), indices (Q,k))."""
  queries = np.asarray(queries, np.float32)
  gallery = np.asarray(gallery, np.float32)
  n = gallery.shape[0]
  k = min(int(k), n)
  if k <= 0:
    return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
  bounds = chunk_bounds(n, chunk_size)
  merge = _merge_fn(k)
  best_s = np.full((len(queries), k), -np.inf, np.float32)
  best_i = np.full((len(queries), k), -1, np.int32)
  # Chunk starts are whole rows of 4 * D bytes: aligned when the gallery is and D % 16 == 0.
  in_place = is_aligned(gallery) and (gallery.shape[1] * 4) % ALIGNMENT == 0
  longest = max(stop - start for start, stop in bounds)
  staging = [] if in_place else [aligned_empty((longest, gallery.shape[1])) for _ in range(2)]
  previous = None
  for number, (start, stop) in enumerate(bounds):
    part = gallery[start:stop]
    if staging:  # the buffer last held chunk number - 2, which the wait below has seen finish
      staged = staging[number % 2][:len(part)]
      np.copyto(staged, part)
      part = staged
    # The last chunks are shorter, not padded: more compilations, but no mask on any chunk.
    best_s, best_i = merge(queries, part, np.int32(start), best_s, best_i)
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


def top_k(queries, gallery, k: int, *, backend: str = 'jax', chunk_size: int = 16384):
  """Top-k by inner product with `backend` in BACKENDS; scores descending."""
  if backend == 'jax':
    return top_k_jax(queries, gallery, k, chunk_size=chunk_size)
  if backend == 'faiss':
    return top_k_faiss(queries, gallery, k)
  raise RetrievalError(f'Unknown backend {backend!r}; valid backends: {", ".join(BACKENDS)}')
