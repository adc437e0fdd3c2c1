"""Retrieval metrics (FG-SBIR protocol): rank of the true photo, Acc@K, mAP.

Ties are broken pessimistically everywhere: a gallery item whose score equals the true item's
counts as ranked above it. A model that outputs constant scores therefore gets the worst rank,
never a lucky one, and results do not depend on the gallery order.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

TOP_K = (1, 5, 10)


def _check_ranks_inputs(sim, target_index, valid_gallery):
  if sim.ndim != 2:
    raise ValueError(f'sim must be (queries, gallery), got shape {sim.shape}.')
  if target_index.shape != (sim.shape[0],):
    raise ValueError(f'target_index must be ({sim.shape[0]},) for sim {sim.shape}, got '
                     f'{target_index.shape}.')
  if valid_gallery is not None and valid_gallery.shape != (sim.shape[1],):
    raise ValueError(f'valid_gallery must be ({sim.shape[1]},), got {valid_gallery.shape}.')


def ranks(sim, target_index, valid_gallery=None) -> np.ndarray:
  """1-based rank of each query's true gallery item (numpy), (Q,) int64.

  Args:
    sim: (Q, N) similarity, higher = better.
    target_index: (Q,) gallery column of each query's true item.
    valid_gallery: optional (N,) bool; False columns (padding) are not ranked.

  rank_q = 1 + #{j != t_q valid : sim[q, j] >= sim[q, t_q]} (pessimistic ties).
  """
  sim = np.asarray(sim)
  target_index = np.asarray(target_index)
  _check_ranks_inputs(sim, target_index, valid_gallery)
  n = sim.shape[1]
  if np.any((target_index < 0) | (target_index >= n)):
    bad = target_index[(target_index < 0) | (target_index >= n)]
    raise ValueError(f'target_index out of range [0, {n}): {bad[:10].tolist()}')
  if valid_gallery is not None:
    valid_gallery = np.asarray(valid_gallery, bool)
    if not np.all(valid_gallery[target_index]):
      raise ValueError('A query targets a padded (invalid) gallery column.')
  rows = np.arange(sim.shape[0])
  target_sim = sim[rows, target_index]
  above = sim >= target_sim[:, None]
  above[rows, target_index] = False
  if valid_gallery is not None:
    above &= valid_gallery[None, :]
  return 1 + above.sum(axis=1).astype(np.int64)


def _ranks_block(sim, target_index, valid_gallery):
  rows = jnp.arange(sim.shape[0])
  target_sim = sim[rows, target_index]
  above = sim >= target_sim[:, None]
  above &= jnp.arange(sim.shape[1])[None, :] != target_index[:, None]
  above &= valid_gallery[None, :]
  return 1 + jnp.sum(above, axis=1, dtype=jnp.int32)


def _chunked(fn, queries, target_index, chunk_size):
  """Applies fn(query_chunk, target_chunk) over chunks of queries with lax.map (padded)."""
  num = queries.shape[0]
  chunk = max(1, min(chunk_size, num))
  pad = (-num) % chunk
  queries = jnp.pad(queries, [(0, pad)] + [(0, 0)] * (queries.ndim - 1))
  target_index = jnp.pad(target_index, (0, pad))
  shape = (-1, chunk) + queries.shape[1:]
  out = jax.lax.map(lambda a: fn(*a), (queries.reshape(shape), target_index.reshape(-1, chunk)))
  return out.reshape(-1)[:num]


@functools.partial(jax.jit, static_argnames=('chunk_size',))
def ranks_jax(sim, target_index, valid_gallery=None, *, chunk_size: int = 1024):
  """`ranks` on device, in chunks of `chunk_size` queries (bounded (chunk, N) temporaries)."""
  valid_gallery = (jnp.ones(sim.shape[1], bool) if valid_gallery is None
                   else jnp.asarray(valid_gallery, bool))
  return _chunked(lambda s, t: _ranks_block(s, t, valid_gallery), sim,
                  jnp.asarray(target_index, jnp.int32), chunk_size)


@functools.partial(jax.jit, static_argnames=('chunk_size',))
def ranks_from_embeddings(queries, gallery, target_index, valid_gallery=None, *,
                          chunk_size: int = 1024):
  """Ranks for sim = queries @ gallery.T without materialising the full (Q, N) matrix."""
  gallery = gallery.astype(jnp.float32)
  valid_gallery = (jnp.ones(gallery.shape[0], bool) if valid_gallery is None
                   else jnp.asarray(valid_gallery, bool))
  block = lambda q, t: _ranks_block(q.astype(jnp.float32) @ gallery.T, t, valid_gallery)
  return _chunked(block, queries, jnp.asarray(target_index, jnp.int32), chunk_size)


def retrieval_metrics(ranks_) -> dict:
  """Acc@1/5/10, mAP (one relevant item per query: AP = 1/rank), mean/median rank."""
  r = np.asarray(ranks_, np.float64).reshape(-1)
  if r.size == 0:
    raise ValueError('retrieval_metrics got no ranks (no valid queries).')
  if np.any(r < 1):
    raise ValueError(f'ranks are 1-based; got min {r.min()}.')
  out = {f'acc@{k}': float(np.mean(r <= k)) for k in TOP_K}
  out.update({'mAP': float(np.mean(1.0 / r)), 'mean_rank': float(np.mean(r)),
              'median_rank': float(np.median(r)), 'num_queries': int(r.size)})
  return out


def average_precision_multi(sim, relevance, valid_gallery=None) -> np.ndarray:
  """Per-query average precision with several relevant items, (Q,); NaN for no relevant item.

  The gallery is sorted by descending score; within a tie, non-relevant items come first
  (pessimistic). AP = mean over relevant items of precision at their position. With one
  relevant item this is 1 / `ranks`.
  """
  sim = np.asarray(sim, np.float64)
  relevance = np.asarray(relevance, bool)
  if sim.shape != relevance.shape or sim.ndim != 2:
    raise ValueError(f'sim {sim.shape} and relevance {relevance.shape} must be the same (Q, N).')
  if valid_gallery is not None:
    valid_gallery = np.asarray(valid_gallery, bool)
    sim = sim[:, valid_gallery]
    relevance = relevance[:, valid_gallery]
  # lexsort: last key is primary -> descending score, then relevant after non-relevant.
  order = np.lexsort((relevance, -sim), axis=1)
  rel_sorted = np.take_along_axis(relevance, order, axis=1)
  hits = np.cumsum(rel_sorted, axis=1)
  positions = np.arange(1, sim.shape[1] + 1)[None, :]
  num_rel = rel_sorted.sum(axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.sum(np.where(rel_sorted, hits / positions, 0.0), axis=1) / num_rel


def map_multi(sim, relevance, valid_gallery=None) -> float:
  """mAP over queries with >= 1 relevant item (see `average_precision_multi`)."""
  ap = average_precision_multi(sim, relevance, valid_gallery)
  ap = ap[~np.isnan(ap)]
  if ap.size == 0:
    raise ValueError('map_multi: no query has a relevant gallery item.')
  return float(np.mean(ap))
