"""Orbax checkpoints of the whole run: train state (params, optimiser, step, RNG, curriculum)
and the Grain iterator position, so a restart continues exactly where the run stopped.

Saving is asynchronous (orbax writes in the background while training continues). Each
checkpoint also stores a checksum of every state array (`fingerprint`) and of every process's
data-loader position (data/process_I-of-N.json), because a garbled file can restore without
any error: everything a resume reads is verified. A latest checkpoint that fails to restore or to
verify (partial write, truncated or garbled file) is skipped with a warning that names it, and the
previous one is used; the unreadable one is moved to `workdir/checkpoints_unreadable/` (a resumed
run saves its step number again), never deleted. When no checkpoint is readable the restore
raises and nothing is moved.

The workdir may be a bucket URL (gs://...): every path here is an `etils.epath.Path`, which orbax
and Grain take as they are.
"""

import contextlib
import hashlib
import json

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from stbir_jax import paths

QUARANTINE = 'checkpoints_unreadable'


class CheckpointError(RuntimeError):
  pass


def _flat_index(shape):
  """uint32 row-major position of every element (mod 2**32), built from iotas so that it is
  computed shard by shard under any sharding."""
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for dim in reversed(range(len(shape))):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, dim) * jnp.uint32(stride % 2**32)
    stride *= shape[dim]
  return index


def _leaf_checksum(x):
  """sum_i bits_i * (2 i + 1) mod 2**32 over the raw bits of `x`: exact integer arithmetic, so
  independent of sharding and reduction order; a changed, lost or moved word changes it."""
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  elif x.dtype.itemsize < 4:
    unsigned = {1: jnp.uint8, 2: jnp.uint16}[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
  else:  # 4 bytes: same shape; 8 bytes: a trailing axis of two words
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
  weights = _flat_index(bits.shape) * jnp.uint32(2) + jnp.uint32(1)
  return jnp.sum(bits * weights, dtype=jnp.uint32)


_checksums = jax.jit(lambda tree: jax.tree.map(_leaf_checksum, tree))


def fingerprint(tree) -> dict:
  """{leaf path: checksum} of a pytree of (possibly sharded, multi-process) arrays."""
  sums = jax.tree_util.tree_leaves_with_path(_checksums(tree))
  # A replicated scalar: any local shard holds the value (device_get would need all processes').
  return {jax.tree_util.keystr(path): int(np.asarray(x.addressable_data(0)))
          for path, x in sums}


# Checksum keys of the Grain iterator positions (one per process), next to the state's leaves.
DATA_KEY = 'data/process_{}-of-{}'


def _data_state_checksum(data_iterator) -> int:
  """sha256 (first 8 bytes) of the iterator position, as JSON with sorted keys: the value Grain
  writes to data/process_I-of-N.json and reads back on restore."""
  state = data_iterator.get_state()
  text = state.decode() if isinstance(state, bytes) else json.dumps(state, sort_keys=True)
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], 'big')


def _data_checksums(data_iterator) -> dict:
  """{DATA_KEY of every process: checksum} (collective with several processes)."""
  local = _data_state_checksum(data_iterator)
  count = jax.process_count()
  if count == 1:
    values = [local]
  else:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    words = np.array([local >> 32, local & 0xffffffff], np.uint32)
    gathered = np.asarray(multihost_utils.process_allgather(words)).reshape(count, 2)
    values = [int(hi) << 32 | int(lo) for hi, lo in gathered]
  return {DATA_KEY.format(i, count): v for i, v in enumerate(values)}


def _verify(state, data_iterator, expected: dict) -> None:
  """Raises unless the restored state and this process's iterator position match `expected`.
  Checkpoints written before the position was covered have no DATA_KEY entries."""
  expected = dict(expected)
  data = {k: expected.pop(k) for k in list(expected) if k.startswith('data/')}
  got = fingerprint(state)
  bad = [k for k in expected if got.get(k) != expected[k]]
  missing = sorted(set(got) ^ set(expected))
  if bad or missing:
    raise CheckpointError(f'checksum mismatch in {len(bad)} array(s), e.g. {bad[:3]}; '
                          f'leaves present on one side only: {missing[:3]}')
  key = DATA_KEY.format(jax.process_index(), jax.process_count())
  if data and data.get(key) != _data_state_checksum(data_iterator):
    raise CheckpointError(f'checksum mismatch in the data-loader position ({key}.json)')


def _all_processes(ok: bool) -> bool:
  """True where `ok` holds on every process (collective with several processes)."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


class Checkpointer:
  """Periodic, keep-N, asynchronous, verified checkpoints under `workdir/checkpoints`."""

  def __init__(self, workdir, *, keep: int, async_save: bool = True):
    root = paths.resolve(workdir)
    self.directory = root / 'checkpoints'
    self.quarantine = root / QUARANTINE
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
    try:
      self._manager = ocp.CheckpointManager(self.directory, options=options,
                                            item_names=('state', 'data', 'checksums'))
    except ImportError as e:
      if not str(self.directory).startswith('gs://'):
        raise
      # orbax lists and deletes steps under gs:// with the google-cloud-storage client (to detect
      # buckets with hierarchical namespace); without it the error names no package to install.
      raise CheckpointError(
          f'{self.directory}: checkpoints in a gs:// workdir need the google-cloud-storage '
          f'package ({type(e).__name__}: {e}); install it with `pip install -e ".[gcs]"`.') from e

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state, data_iterator) -> None:
    """Starts writing `step` and returns once the arrays are copied off the devices (orbax waits
    here for the previous save to finish first)."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        checksums=ocp.args.JsonSave({**fingerprint(state), **_data_checksums(data_iterator)})),
        force=True)

  def restore(self, abstract_state, data_iterator):
    """Restores the newest readable checkpoint into the shapes/shardings of `abstract_state`.

    Returns (step, state), or (None, None) when there is no checkpoint. Raises when checkpoints
    exist but none can be restored, rather than starting over on top of them.
    """
    steps = self.all_steps()
    unreadable = []
    for step in reversed(steps):
      state, error = self._restore_step(step, abstract_state, data_iterator)
      # Every process must resume from the same step, even where only one failed to read.
      if _all_processes(error is None):
        self._move_aside(unreadable)
        return step, state
      logging.warning('Checkpoint %s could not be restored (%s); falling back to the previous '
                      'one.', self.directory / str(step),
                      error or 'failed on another process')
      unreadable.append(step)
    if steps:
      raise CheckpointError(f'None of the checkpoints {steps} in {self.directory} could be '
                            'restored (see the warnings above); nothing was moved or deleted. '
                            'Move them away to start afresh.')
    return None, None

  def _restore_step(self, step, abstract_state, data_iterator):
    """(state, None), or (None, 'what failed')."""
    verified = (self.directory / str(step) / 'checksums').is_dir()
    items = dict(state=ocp.args.StandardRestore(abstract_state),
                 data=grain.checkpoint.CheckpointRestore(data_iterator))
    if verified:  # (checkpoints written before checksums existed restore unverified)
      items['checksums'] = ocp.args.JsonRestore()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
      if verified:
        _verify(restored.state, restored.data, restored.checksums)
    except Exception as e:  # pylint: disable=broad-except
      return None, f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
    return restored.state, None

  def _move_aside(self, steps) -> None:
    """Moves unreadable checkpoints out of the manager's directory: the resumed run saves those
    step numbers again (orbax refuses an existing step) and keep-N would delete them later."""
    if not steps:
      return
    if jax.process_index() == 0:
      self.quarantine.mkdir(parents=True, exist_ok=True)
      for step in steps:
        source = self.directory / str(step)
        target = self.quarantine / str(step)
        n = 1
        while target.exists():
          target, n = self.quarantine / f'{step}.{n}', n + 1
        # A step is a directory: a local rename, or on GCS tf.io.gfile.rename, which copies then
        # deletes object by object (an atomic move on buckets with hierarchical namespace), as
        # orbax's own soft delete (todelete_full_path) does.
        source.rename(target)
        logging.warning('Moved the unreadable checkpoint %s to %s (kept for inspection).', source,
                        target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices('stbir_checkpoint_move_aside')
    self._manager.reload()

  @contextlib.contextmanager
  def closed_on_error(self):
    """On an exception, waits for an in-flight async save and closes before re-raising: the
    error is about to end the process, which would lose that checkpoint half-written."""
    try:
      yield self
    except BaseException:
      try:
        self.close()
      except Exception as e:  # pylint: disable=broad-except
        logging.error('Could not finish the last checkpoint save: %s: %s', type(e).__name__, e)
      raise

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
