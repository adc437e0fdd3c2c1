"""The `python -m stbir_jax.search` program: its flags and its two commands, `index` and
`query` (usage: stbir_jax/search/__init__.py). One set of absl flags serves both commands; a flag
of the other command is refused, as are missing required ones.

A SearchError (a bad folder, index, model, sketch, text or number) ends the program with one
line, `search: error: MESSAGE`, and exit status 2; so does a bad flag value
(stbir_jax/cli.py:parse_flags_or_fail).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from absl import flags
from PIL import Image

from stbir_jax.data import sketch_io
from stbir_jax.search import ann, ann_store, index, rendering
from stbir_jax.search.inputs import FIT_HELP, SearchError, check_k, check_text
from stbir_jax.search.searcher import BACKENDS, MODES, Searcher

PROG = 'search'
COMMANDS = ('index', 'query')
ANN_PARAMS_HELP = ('ANN parameters, e.g. "nprobe=32" or "ef_search=128" (defaults: '
                   'stbir_jax/search/ann.py DEFAULTS)')
# The flags of each command; --backend, --ann_params, --model and --out serve both.
INDEX_FLAGS = ('model', 'images', 'out', 'batch_size', 'chunk_size', 'quiet', 'backend',
               'ann_params')
QUERY_FLAGS = ('index', 'sketch', 'text', 'k', 'mode', 'out', 'backend', 'exact', 'ann_params',
               'model', 'fit')
REQUIRED = {'index': ('model', 'images', 'out'), 'query': ('index',)}
DEFAULT_QUERY_BACKEND = 'jax'

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defined when run as a program (stbir_jax/search/__main__.py), or on a FlagValues of a
  test's own: the library modules are imported next to other programs' flags."""
  define = {'flag_values': flag_values}
  flags.DEFINE_string('model', None, 'index (required): export directory (python -m '
                      "stbir_jax.export); query: default the index's", **define)
  flags.DEFINE_string('images', None, 'index: folder of photos (searched recursively)', **define)
  flags.DEFINE_string('out', None, 'index: index directory to write (or resume); query: results '
                      'picture (.png) or page (.html)', **define)
  flags.DEFINE_integer('batch_size', 32, 'index: photos per encoder call', **define)
  flags.DEFINE_integer('chunk_size', 512, 'index: photos per committed chunk', **define)
  flags.DEFINE_bool('quiet', False, 'index: no progress bar', **define)
  flags.DEFINE_enum('backend', None, BACKENDS, 'index: also build (or update) this approximate '
                    f'index ({", ".join(ann.BACKENDS)}; docs/usage.md). query (default '
                    f'{DEFAULT_QUERY_BACKEND}): jax/faiss: exact; ivf_flat/ivf_pq/hnsw/scann: the '
                    'index built by `index --backend=...`', **define)
  flags.DEFINE_string('ann_params', '', ANN_PARAMS_HELP, **define)
  flags.DEFINE_string('index', None, 'query (required): the index directory', **define)
  flags.DEFINE_string('sketch', None, 'query: .png/.jpg/... raster or .svg/.json sketch',
                      **define)
  flags.DEFINE_string('text', '', 'query: description, e.g. "red suede with white laces"',
                      **define)
  flags.DEFINE_integer('k', 10, 'query: number of results', **define)
  flags.DEFINE_enum('mode', 'auto', MODES, 'query: auto: whatever was given; or force one '
                    'modality', **define)
  flags.DEFINE_bool('exact', False, 'query, ANN backends: re-rank the candidates with exact '
                    'scores', **define)
  flags.DEFINE_enum('fit', 'ink', sketch_io.FITS, f'query: {FIT_HELP}', **define)


def main(argv, flag_values: flags.FlagValues = FLAGS) -> int:
  """argv: [program, command] after absl parsed the flags. Returns the exit status."""
  # Images above PIL's warning size are refused by image_safety with one clear line anyway.
  warnings.simplefilter('ignore', Image.DecompressionBombWarning)
  try:
    command = _command(argv, flag_values)
    if command == 'index':
      _index(flag_values)
    else:
      _query(flag_values)
    return 0
  except SearchError as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 2


def _command(argv, flag_values) -> str:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise SearchError(f'expected one command, {" or ".join(COMMANDS)}; got {argv[1:]}')
  command = argv[1]
  own = INDEX_FLAGS if command == 'index' else QUERY_FLAGS
  other = [name for name in INDEX_FLAGS + QUERY_FLAGS
           if name not in own and flag_values[name].present]
  if other:
    raise SearchError(f'--{other[0]} is not a flag of `{command}`; its flags: '
                      f'{", ".join("--" + name for name in own)}')
  missing = [f'--{name}' for name in REQUIRED[command] if flag_values[name].value is None]
  if missing:
    raise SearchError(f'`{command}` needs {" and ".join(missing)}')
  return command


def _index(f) -> None:
  if f.backend is not None and f.backend not in ann.BACKENDS:
    raise SearchError(f'--backend {f.backend!r}: `index` builds an approximate index, one of '
                      f'{", ".join(ann.BACKENDS)}')
  report = index.build_index(f.model, f.images, f.out, batch_size=f.batch_size,
                             chunk_size=f.chunk_size, progress=not f.quiet)
  print(f'indexed {report["indexed"]} images into {f.out}; skipped {report["skipped_count"]}'
        f' (listed in {Path(f.out) / "report.json"})')
  for s in report['skipped'][:10]:
    print(f'  skipped {s["file"]}: {s["error"]}')
  if f.backend:
    meta = index.build_ann(f.out, f.backend, _ann_params(f.ann_params),
                           progress=None if f.quiet else print)
    print(f'{f.backend} index of {meta["rows"]} rows in {Path(f.out) / "ann" / f.backend}: '
          f'{ann_store.describe_meta(meta)}')


def _query(f) -> None:
  check_text(f.text, '--text')
  check_k(f.k, '--k')  # before the model is loaded
  searcher = Searcher(f.index, f.model, backend=f.backend or DEFAULT_QUERY_BACKEND, fit=f.fit,
                      exact=f.exact, ann_params=_ann_params(f.ann_params))
  results, smap, text = searcher.search(f.sketch, f.text, f.k, f.mode)
  mode = '+'.join(m for m, used in (('sketch', smap is not None), ('text', bool(text))) if used)
  print(f'top {len(results)} of {len(searcher.index)} ({mode} query)')
  for r in results:
    print(f'{r.rank:4d}  {r.score:+.4f}  {r.path}')
  if searcher.ann is not None:
    print(f'approximate: {searcher.describe_backend()}')
  if f.out:
    rendering.write_results(f.out, results, smap, text)
    print(f'wrote {f.out}')


def _ann_params(text: str) -> dict:
  try:
    return ann.parse_params(text)
  except ann.AnnError as e:
    raise SearchError(str(e)) from None
