"""How the `python -m` programs end on an error the project expects: one line, exit status 2.

A named error (a bad config key or value, a tokenizer or checkpoint that cannot be loaded, an
unusable workdir, ...) already says what is wrong and what to do; its traceback would only bury
that. `run(prog, fn)` prints `PROG: error: MESSAGE` (the message on one line) to stderr and
exits with status 2. Any other exception keeps its traceback: it is a bug to report.

A full disk is one of these errors, wherever it is raised (an OSError, or tensorstore's
RESOURCE_EXHAUSTED inside orbax). It also leaves orbax's pending write coroutines behind: orbax
runs them on an event loop it closes without cancelling them (orbax.checkpoint._src.asyncio_utils
`_run_sync_via_new_loop`), so each one, collected later, reports `RuntimeError: Event loop is
closed` (thousands of lines for one checkpoint). `run` drops those reports and asyncio's "Task
was destroyed but it is pending!" logs, and strips the repeated tracebacks orbax's background
threads log for the full disk, so that the one line saying "No space left on device" is seen.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sys

ENOSPC_TEXT = 'No space left on device'


def named_errors() -> tuple:
  """The exception classes whose message is the whole story (imported here, on first use)."""
  from stbir_jax import checkpoint, config_checks, paths, stages  # pylint: disable=g-import-not-at-top
  from stbir_jax.convert import hub  # pylint: disable=g-import-not-at-top
  from stbir_jax.data import pipeline, sketch_io, tokenizer  # pylint: disable=g-import-not-at-top
  from stbir_jax.data.formats import common  # pylint: disable=g-import-not-at-top
  return (config_checks.ConfigError, stages.StageError, tokenizer.TokenizerError,
          checkpoint.CheckpointError, paths.PathError, hub.ConvertError, pipeline.DataError,
          common.PrepareError, sketch_io.SketchError)


def one_line(text: str) -> str:
  """A message on one line: its lines joined with '; ' (lists of differences, suggestions)."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return '; '.join(lines)


def _chain(error):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def disk_full(error) -> str | None:
  """The line that says which write found the disk full, or None when `error` is not that."""
  for e in _chain(error):
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
      return f'{ENOSPC_TEXT}: {e.filename}' if e.filename else str(e)
    if ENOSPC_TEXT in str(e):
      return next(line.strip() for line in str(e).splitlines() if ENOSPC_TEXT in line)
  return None


class _DropEventLoopClosed:
  """sys.unraisablehook that drops the `Event loop is closed` reports of collected coroutines."""

  def __init__(self, previous):
    self.previous = previous
    self.dropped = 0

  def __call__(self, unraisable):
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and str(value) == 'Event loop is closed':
      self.dropped += 1
      return
    self.previous(unraisable)


class _QuietAfterDiskFull(logging.Filter):
  """asyncio's pending-task reports dropped; orbax's full-disk errors kept without traceback."""

  def filter(self, record):
    if record.name == 'asyncio' and 'Task was destroyed but it is pending' in record.getMessage():
      return False
    if record.exc_info and disk_full(record.exc_info[1]):
      record.exc_info, record.exc_text = None, None
    return True


def install_quiet_shutdown() -> None:
  """Installs the filters above (idempotent): the unraisable hook, and the log filter on the
  root logger's handlers (absl's among them) and on asyncio's logger."""
  if not isinstance(sys.unraisablehook, _DropEventLoopClosed):
    sys.unraisablehook = _DropEventLoopClosed(sys.unraisablehook)
  quiet = _QuietAfterDiskFull()
  for handler in logging.getLogger().handlers:
    if not any(isinstance(f, _QuietAfterDiskFull) for f in handler.filters):
      handler.addFilter(quiet)
  asyncio_logger = logging.getLogger('asyncio')
  if not any(isinstance(f, _QuietAfterDiskFull) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(quiet)


def fail(prog: str, message: str, status: int = 2):
  print(f'{prog}: error: {one_line(message)}', file=sys.stderr, flush=True)
  sys.exit(status)


@contextlib.contextmanager
def one_line_errors(prog: str, extra=(), disk_full_hint: str = ''):
  """Named errors (and `extra` classes, and a full disk, followed by `disk_full_hint`) end the
  program with one line and exit status 2; anything else propagates with its traceback."""
  install_quiet_shutdown()
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    full = disk_full(e)
    if full:
      fail(prog, f'{full}{disk_full_hint}')
    if isinstance(e, named_errors() + tuple(extra)):
      fail(prog, str(e))
    raise


_HELP_FLAGS = ('help', '?', 'helpshort', 'helpfull', 'helpxml')


def parse_flags_or_fail(prog: str, flag_values=None):
  """An absl `flags_parser` for app.run: a bad flag value or an unknown --config.KEY ends the
  program with one line (absl prints a usage hint, ml_collections a KeyError traceback); --help
  exits with status 0, as asking for it is no error. `flag_values`: the FlagValues to parse into
  (default: absl's global FLAGS)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  def parse(argv):
    try:
      return (flags.FLAGS if flag_values is None else flag_values)(argv)
    except SystemExit as e:  # absl's --help (and --helpfull, ...) prints the usage, exits 1
      asked = any(a.lstrip('-').split('=')[0] in _HELP_FLAGS for a in argv[1:])
      raise SystemExit(0 if asked and e.code == 1 else e.code) from None
    except flags.Error as e:
      text = str(e)
      if 'Traceback (most recent call last)' in text:  # a config file that raised: its error
        head, _, trace = text.partition('Traceback (most recent call last)')
        text = f'{head.strip()} {trace.strip().splitlines()[-1]}'
      fail(prog, text)
    except (AttributeError, KeyError) as e:  # ml_collections: --config.<no such key>=...
      inner = e.args[0] if e.args else e
      text = inner.args[0] if isinstance(inner, KeyError) and inner.args else str(inner)
      key = str(text).splitlines()[0].strip('\'"')
      given = [a.split('=')[0] for a in argv
               if a.startswith('--config.') and a.split('=')[0].endswith(f'.{key}')]
      fail(prog, f'Unknown config key {given[0] if given else key!r}: the config has no such '
                 f'key. {" ".join(str(text).splitlines()[1:])}')

  return parse


def quiet_library_logs() -> None:
  """absl logs INFO once app.run parsed the flags; keeps libraries' INFO chatter (TFDS, orbax's
  dozen lines per checkpoint read) off a program's output unless --verbosity asks for it."""
  from absl import flags, logging  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def run_program(prog: str, define_flags, program, argv=None, extra=()) -> int:
  """A `python -m` program whose flags `define_flags(flag_values)` defines and which
  `program(flag_values)` runs (returning its exit status), ending like the others: a bad flag or
  a named error (or one of the `extra` classes) is one line and exit status 2.

  argv None: run as the program, on sys.argv through absl's app.run (--help, --flagfile, logging
  flags); the flags are defined on absl's global FLAGS only then, so importing the module next to
  other programs (tests, notebooks) defines none. A list of flags (no program name): parsed into
  a FlagValues of their own, and the exit status is returned (how tests call a program).
  """
  from absl import app, flags  # pylint: disable=g-import-not-at-top

  def checked(values, args):
    if len(args) > 1:
      fail(prog, f'unexpected arguments: {" ".join(args[1:])}')
    with one_line_errors(prog, extra):
      return program(values) or 0

  def as_program(args):
    quiet_library_logs()
    return checked(flags.FLAGS, args)

  if argv is None:
    from stbir_jax import host_memory  # pylint: disable=g-import-not-at-top
    host_memory.keep_freed_memory()   # a process of its own: before JAX starts its CPU threads
    define_flags(flags.FLAGS)
    app.run(as_program, flags_parser=parse_flags_or_fail(prog))
  values = flags.FlagValues()
  define_flags(values)
  try:
    return checked(values, parse_flags_or_fail(prog, values)([prog] + list(argv)))
  except SystemExit as e:
    return e.code


def run(prog: str, fn, *args, **kwargs):
  """fn(*args, **kwargs) under `one_line_errors(prog)`."""
  with one_line_errors(prog):
    return fn(*args, **kwargs)
