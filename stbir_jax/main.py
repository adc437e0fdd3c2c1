r"""Entry point: flags only; `train.train_and_evaluate` is the program.

  python -m stbir_jax.main --config=configs/base.py:demo_budget --workdir=workdirs/demo_budget

Multi-host (TPU pod slices, multi-node GPU): `jax.distributed.initialize()` reads the cluster
from the environment; pass --distributed (the launch/ scripts do).

The console shows a start line, a line per stage, a progress line every train.log_every steps,
a line per evaluation and the results table (stbir_jax/console.py); start-up INFO messages of
TensorFlow, JAX, TFDS, orbax and absl are kept off it. --verbose (or an explicit --verbosity=0)
brings back the INFO log and one line of every metric each log_every steps; TensorBoard gets
every metric either way.
"""

import logging as logging_lib
import os

# Before TensorFlow is imported (it only writes summaries and datasets here): no C++ INFO and
# WARNING lines, and no oneDNN notice.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

# config_overrides: list-valued --config.* flags.
from stbir_jax import cli, config_overrides  # noqa: E402,F401

PROG = 'stbir_jax.main'

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/base.py:demo.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results: a local '
                    'path or a gs:// URL.')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() first (multi-host).')
flags.DEFINE_bool('verbose', False, 'Log at INFO and log every metric each train.log_every '
                  'steps (the console otherwise shows one progress line instead).')
flags.DEFINE_bool('allow_config_change', False, 'Resume a run with a config that differs from '
                  'the one it was started (or last resumed) with; the change is recorded in '
                  'WORKDIR/config_history/.')
flags.mark_flags_as_required(['config', 'workdir'])


# Warnings that say nothing to act on: TFDS names every STBIR-Synth configuration "custom".
_EXPECTED_WARNINGS = ('Using custom data configuration',)


class _QuietLibraries(logging_lib.Filter):
  """Keeps INFO chatter of orbax/TFDS out of the run log; their warnings still show."""

  def filter(self, record):
    noisy = any(f'{os.sep}{lib}{os.sep}' in record.pathname
                for lib in ('orbax', 'tensorflow_datasets', 'grain', 'etils'))
    if noisy and str(record.msg).startswith(_EXPECTED_WARNINGS):
      return False
    return record.levelno >= logging_lib.WARNING or not noisy


def verbose() -> bool:
  """--verbose, or an explicit --verbosity at INFO or above."""
  return FLAGS.verbose or bool(FLAGS['verbosity'].present and FLAGS.verbosity >= logging.INFO)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if verbose():
    logging.set_verbosity(max(FLAGS.verbosity, logging.INFO))
  elif not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # the console lines replace the INFO log
  import jax  # pylint: disable=g-import-not-at-top

  # TensorFlow is used only for writing summaries and datasets: keep it off accelerators.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  if FLAGS.distributed:
    jax.distributed.initialize()
  from stbir_jax import train  # pylint: disable=g-import-not-at-top
  logging.info('JAX devices: %d (%d local) on %d process(es).', jax.device_count(),
               jax.local_device_count(), jax.process_count())
  # A named error (bad config, offline tokenizer, no readable checkpoint, full disk) ends the
  # run with its one-line message and exit status 2 (stbir_jax/cli.py).
  with cli.one_line_errors(PROG, disk_full_hint=(
      ' (the checkpoints saved before are kept; free space and rerun the same command to '
      'resume)')):
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                             allow_config_change=FLAGS.allow_config_change,
                             verbose=verbose())


if __name__ == '__main__':
  from stbir_jax import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()   # before JAX starts its CPU threads
  app.run(main, flags_parser=cli.parse_flags_or_fail(PROG))
