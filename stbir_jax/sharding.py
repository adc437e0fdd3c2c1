"""Device mesh, parameter partitioning and host -> global batches.

One `jax.sharding.Mesh` with axes (data, fsdp, model). The batch is split over data x fsdp;
large kernels are split over fsdp along their largest divisible dimension (ZeRO-3 style) and
everything else is replicated. `jit` inserts the collectives, so the same step runs on one CPU,
8 fake CPU devices, a GPU node or a TPU pod slice.
"""

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ('data', 'fsdp', 'model')
BATCH_AXES = ('data', 'fsdp')
# Kernels smaller than this stay replicated: splitting them costs more in collectives than it saves.
FSDP_MIN_SIZE = 2**18


class MeshError(ValueError):
  pass


def _named(sizes) -> dict:
  """{'data': ..., 'fsdp': ..., 'model': ...}: axis sizes as the error messages show them."""
  return dict(zip(AXES, sizes, strict=True))


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, int, int]:
  """Resolves the config's axis sizes (one may be -1 = fill) against the device count."""
  sizes = [int(mesh_config[a]) for a in AXES]
  if sizes.count(-1) > 1:
    raise MeshError(f'config.mesh: at most one axis may be -1, got {_named(sizes)}.')
  known = math.prod(s for s in sizes if s != -1)
  if any(s == 0 or s < -1 for s in sizes):
    raise MeshError(f'config.mesh axis sizes must be positive or -1, got {_named(sizes)}.')
  if -1 in sizes:
    if num_devices % known:
      raise MeshError(f'config.mesh {_named(sizes)}: {num_devices} devices are not '
                      f'divisible by the fixed axes (product {known}).')
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise MeshError(f'config.mesh {_named(sizes)} needs {math.prod(sizes)} devices but '
                    f'{num_devices} are available; set one axis to -1 to fill.')
  return tuple(sizes)


def make_mesh(mesh_config, devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  shape = mesh_shape(mesh_config, len(devices))
  return Mesh(np.asarray(devices).reshape(shape), AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def constrain_to_batch(x):
  """x split along its first (batch) dimension over the batch axes, when traced under a mesh
  that has them (the jitted train step, jit_step); unchanged elsewhere. Placed where the
  partitioner would otherwise follow a sharded parameter instead of the batch: a token embedding
  looked up in a table sharded over fsdp came out with every chip holding the whole global
  batch, and the text tower then ran on all of it on every chip (docs/scaling.md)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not set(BATCH_AXES) <= set(mesh.axis_names):
    return x
  return jax.lax.with_sharding_constraint(x, P(BATCH_AXES))


def traced_under(mesh: Mesh | None, fn):
  """`fn`, traced under `mesh` (its abstract mesh) so that the model's constrain_to_batch
  applies when it is jitted; `fn` itself without a mesh."""
  if mesh is None:
    return fn

  def under_mesh(*args):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args)
  return under_mesh


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
  return mesh.shape['data'] * mesh.shape['fsdp']


def param_spec(shape, fsdp_size: int) -> P:
  """FSDP rule: split the largest dimension divisible by the fsdp axis of a large array."""
  if fsdp_size <= 1 or math.prod(shape) < FSDP_MIN_SIZE:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[dim] = 'fsdp'
      return P(*spec)
  return P()


def state_shardings(mesh: Mesh, abstract_state):
  """NamedShardings for every leaf of a (possibly abstract) train state."""
  fsdp_size = mesh.shape['fsdp']
  return jax.tree.map(lambda x: NamedSharding(mesh, param_spec(np.shape(x), fsdp_size)),
                      abstract_state)


def global_batch(mesh: Mesh, local_batch: dict) -> dict:
  """Host-local numpy batch -> global jax.Arrays sharded over the data axes (multi-host safe)."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
