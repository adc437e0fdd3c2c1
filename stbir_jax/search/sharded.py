"""Exact top-k over a gallery sharded over a device mesh: one query batch, the whole gallery.

The gallery's rows are split over every device of the mesh (all of stbir_jax.sharding.AXES,
flattened, so the training mesh is reused as it is, over one host or many). Each device scores
the replicated query batch against its own rows, chunk by chunk inside one jitted `lax.scan`
that merges a running top-k (memory O(Q * (chunk + k)) per device, whatever its share), then
the devices' k best, with global row ids, are all-gathered and merged by one more top-k. The
result is replicated on every device and equals stbir_jax.retrieval.top_k_jax on one device,
ties included (the lower gallery row first).

  mesh = sharding.make_mesh({'data': -1, 'fsdp': 1, 'model': 1})
  gallery = shard_gallery(mesh, embeddings)      # (N, D); np.load(..., mmap_mode='r') is fine:
  scores, ids = gallery.top_k(queries, k=10)     # each process reads only its own rows

Multi-host: every process calls shard_gallery with the same (global) array-like, e.g. the same
memory-mapped file, and the same queries; each reads and holds only the rows of its devices.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from stbir_jax import retrieval, sharding

ROW_AXES = sharding.AXES   # the rows go over every mesh axis


@dataclasses.dataclass(frozen=True)
class ShardedGallery:
  """`rows`: (devices * rows_per_device, D) float32 sharded over the mesh; rows >= `size` are
  zero padding that never scores."""
  mesh: Mesh
  rows: jax.Array
  size: int
  chunk: int

  def top_k(self, queries, k: int):
    """(Q, D) queries -> (scores (Q, k), global row ids (Q, k)) as numpy, best first."""
    queries = np.asarray(queries, np.float32)
    k = min(int(k), self.size)
    if k <= 0:
      return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    replicated = NamedSharding(self.mesh, P())
    q = jax.make_array_from_callback(queries.shape, replicated, lambda index: queries[index])
    scores, ids = _search_fn(self.mesh, k, self.chunk, self.size)(q, self.rows)
    return np.asarray(scores), np.asarray(ids).astype(np.int64)


def _equal_chunks(rows: int, chunk_size: int) -> tuple[int, int]:
  """(number, size) of equal chunks covering `rows` with chunks of at most chunk_size."""
  number = -(-rows // max(1, min(int(chunk_size), rows)))
  return number, -(-rows // number)


def shard_gallery(mesh: Mesh, gallery, *, chunk_size: int = 65536) -> ShardedGallery:
  """Places an (N, D) gallery's rows over `mesh`, each process reading only its devices' rows."""
  n, d = gallery.shape
  if n == 0:
    raise ValueError('shard_gallery: the gallery is empty; expected (N, D) embeddings, N > 0')
  devices = mesh.devices.size
  number, chunk = _equal_chunks(-(-n // devices), chunk_size)
  total = devices * number * chunk

  def rows(index):
    start, stop, _ = index[0].indices(total)
    out = np.zeros((stop - start, d), np.float32)
    real = np.asarray(gallery[start:min(stop, n)], np.float32)
    out[:len(real)] = real
    return out

  array = jax.make_array_from_callback((total, d), NamedSharding(mesh, P(ROW_AXES)), rows)
  return ShardedGallery(mesh, array, n, chunk)


@functools.lru_cache(maxsize=16)
def _search_fn(mesh: Mesh, k: int, chunk: int, size: int):
  """The jitted sharded search for one (mesh, k, chunk, gallery size)."""

  def local(queries, rows):
    per_device, d = rows.shape
    first = jax.lax.axis_index(ROW_AXES) * per_device   # this device's first global row
    chunks = rows.reshape(per_device // chunk, chunk, d)

    def step(best, xs):
      part, number = xs
      ids = first + number * chunk + jnp.arange(chunk, dtype=jnp.int32)
      s, pos = retrieval.chunk_top_k(queries, part, k, valid=ids < size)   # padding never wins
      return retrieval.merge_top_k(*best, s, ids[pos], k), None

    init = (jnp.full((queries.shape[0], k), -jnp.inf, jnp.float32),
            jnp.full((queries.shape[0], k), -1, jnp.int32))
    (s, i), _ = jax.lax.scan(step, init, (chunks, jnp.arange(len(chunks), dtype=jnp.int32)))
    # Devices in mesh order hold increasing rows, so the gathered candidates keep tie order.
    all_s = jax.lax.all_gather(s, ROW_AXES, axis=1, tiled=True)
    all_i = jax.lax.all_gather(i, ROW_AXES, axis=1, tiled=True)
    s, pos = jax.lax.top_k(all_s, k)
    return s, jnp.take_along_axis(all_i, pos, axis=1)

  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(ROW_AXES)),
                               out_specs=(P(), P()), check_vma=False))


def default_mesh() -> Mesh:
  """Every device of every process on the data axis."""
  return sharding.make_mesh({'data': -1, 'fsdp': 1, 'model': 1})
