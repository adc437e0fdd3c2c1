"""Orbax checkpoints of the whole run: train state (params, optimiser, step, RNG, curriculum)
and the Grain iterator position, so a restart continues exactly where the run stopped.

Saving is asynchronous (orbax writes in the background while training continues). A latest
checkpoint that fails to restore (partial write, corrupt file) is skipped with a warning that
names it, and the previous one is used; nothing is deleted.
"""

import os

import grain
import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(RuntimeError):
  pass


class Checkpointer:
  """Periodic, keep-N, asynchronous checkpoints under `workdir/checkpoints`."""

  def __init__(self, workdir: str, *, keep: int, async_save: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=('state', 'data'))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step: int, state, data_iterator) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)

  def restore(self, abstract_state, data_iterator):
    """Restores the newest readable checkpoint into the shapes/shardings of `abstract_state`.

    Returns (step, state), or (None, None) when there is no checkpoint. Raises when checkpoints
    exist but none can be restored, rather than starting over on top of them.
    """
    steps = self.all_steps()
    for step in reversed(steps):
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('Checkpoint %s could not be restored (%s: %s); falling back to the '
                        'previous one.', os.path.join(self.directory, str(step)),
                        type(e).__name__, str(e).splitlines()[0] if str(e) else '')
        continue
      return step, restored.state
    if steps:
      raise CheckpointError(f'None of the checkpoints {steps} in {self.directory} could be '
                            'restored (see the warnings above); move them away to start afresh.')
    return None, None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
