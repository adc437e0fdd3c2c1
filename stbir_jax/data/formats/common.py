"""What every format reader returns: items (one per photo), and the validation report."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

from stbir_jax.data import sketch_io

PHOTO_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
TEST_PERCENT = 10  # hash split: this share of photos goes to 'test'


class PrepareError(ValueError):
  """A source that cannot be prepared; the message names the file and what was expected."""


@dataclasses.dataclass
class SketchRef:
  """One sketch of a photo: a file, or strokes already read (pickled coordinates)."""
  name: str
  path: Path | None = None
  strokes: list | None = None


@dataclasses.dataclass
class Item:
  """One gallery photo with everything known about it before decoding."""
  photo_id: str
  image: Path
  split: str
  category: str
  sketches: list = dataclasses.field(default_factory=list)
  texts: list = dataclasses.field(default_factory=list)
  caption_keys: tuple = ()     # extra keys under which a --captions file may name this photo
  instance: int = -1           # assigned by prepare: unique over all splits
  family: int = -1             # group of near-identical photos (stbir_demo: virtual_class);
                               # -1 = none (schema.NO_FAMILY)


@dataclasses.dataclass
class Options:
  split_file: str | None = None     # overrides a format's default test-split list
  allow_missing: bool = False       # manifest: skip (and report) files that do not exist
  root: str | None = None           # stbir_demo: the folder its paths are relative to
  trust_pickle: bool = False        # qmul: unpickle anything (default: numpy arrays, plain data)
  allow_outside_root: bool = False  # manifest: read paths outside the manifest's folder


class Report:
  """Validation report: problems found while reading and counts of what was written."""

  def __init__(self):
    self.sketches_without_photo = []   # sketch files/names whose photo was not found
    self.photos_without_sketch = []    # photo ids kept with an empty `sketches`
    self.unreadable = []               # {'file', 'error'}: skipped files
    self.captions_without_photo = []   # keys of the --captions file that matched no photo
    self.notes = []                    # anything else the user should know
    self.counts = {}                   # split -> category -> {'photos', 'sketches', 'texts'}

  def unreadable_file(self, file, error):
    self.unreadable.append({'file': str(file), 'error': str(error)})

  def count(self, split, category, sketches, texts):
    c = self.counts.setdefault(split, {}).setdefault(
        category, {'photos': 0, 'sketches': 0, 'texts': 0})
    c['photos'] += 1
    c['sketches'] += sketches
    c['texts'] += texts

  def as_dict(self):
    totals = {s: {k: sum(c[k] for c in cats.values()) for k in ('photos', 'sketches', 'texts')}
              for s, cats in self.counts.items()}
    return {
        'totals': totals,
        'counts': self.counts,
        'sketches_without_photo': sorted(self.sketches_without_photo),
        'photos_without_sketch': sorted(self.photos_without_sketch),
        'unreadable': self.unreadable,
        'captions_without_photo': sorted(self.captions_without_photo),
        'notes': self.notes,
    }

  def summary(self, limit=10):
    d = self.as_dict()
    lines = ['validation report']
    for split, t in sorted(d['totals'].items()):
      lines.append(f'  {split:<10} photos={t["photos"]:<7} sketches={t["sketches"]:<7} '
                   f'texts={t["texts"]}')
    for key in ('sketches_without_photo', 'photos_without_sketch', 'unreadable',
                'captions_without_photo', 'notes'):
      values = d[key]
      lines.append(f'  {key}: {len(values)}')
      for v in values[:limit]:
        v = f'{v["file"]}: {v["error"]}' if isinstance(v, dict) else v
        lines.append(f'    {v}')
      if len(values) > limit:
        lines.append(f'    ... {len(values) - limit} more in the JSON report')
    return '\n'.join(lines)


def hash_split(key: str) -> str:
  """Deterministic 90/10 train/test split from the sha1 of the photo id."""
  h = int(hashlib.sha1(key.encode('utf-8')).hexdigest(), 16)
  return 'test' if h % 100 < TEST_PERCENT else 'train'


def jsonl_objects(path: Path, skip_comments: bool = False):
  """(line number, 'path:line' for error messages, object) of every non-blank line of a JSONL
  manifest; `skip_comments` also skips lines starting with '#'. Raises PrepareError naming the
  file, or the file and line: unreadable, bad JSON, not a JSON object."""
  try:
    lines = path.read_text(encoding='utf-8').splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise PrepareError(f'{path}: cannot read manifest: {e}') from None
  for n, line in enumerate(lines, start=1):
    where = f'{path}:{n}'
    if not line.strip() or (skip_comments and line.lstrip().startswith('#')):
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise PrepareError(f'{where}: bad JSON ({e.msg} at column {e.colno})') from None
    if not isinstance(obj, dict):
      raise PrepareError(f'{where}: expected a JSON object, got {type(obj).__name__}')
    yield n, where, obj


def require_dir(path: Path, what: str) -> Path:
  if not path.is_dir():
    raise PrepareError(f'{path}: expected a directory with {what}')
  return path


def files(folder: Path, extensions, recursive=False):
  pattern = '**/*' if recursive else '*'
  return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in extensions)


def read_id_list(path: Path) -> list[str]:
  """A split list: one id per line; blank lines and '#' comments skipped, extensions dropped."""
  try:
    lines = path.read_text().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise PrepareError(f'{path}: cannot read split list: {e}') from None
  out = []
  for line in lines:
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    p = Path(line)
    out.append(str(p.with_suffix('')) if p.suffix.lower() in PHOTO_EXTENSIONS else line)
  return out


def find_split_file(src: Path, options: Options, candidates, what: str) -> Path:
  if options.split_file:
    path = Path(options.split_file)
    if not path.is_file():
      raise PrepareError(f'--split_file {path}: no such file; expected {what}')
    return path
  for c in candidates:
    if (src / c).is_file():
      return src / c
  raise PrepareError(f'{src}: no test-split list found (looked for '
                     f'{", ".join(str(src / c) for c in candidates)}); expected {what}. '
                     'Pass --split_file=FILE.')


def load_stroke_pickle_entry(name, value):
  """Validates one pickled (N, 3) absolute (x, y, pen) array -> strokes."""
  return sketch_io.strokes_from_array(value, name=name)


def load_captions(path) -> dict[str, list[str]]:
  """--captions file -> {photo id: [sentences]}.

  JSON: an object {photo_id: "sentence" | ["sentence", ...]}, or a list of objects
  with an id key (photo_id | id | image_id) and a text key (text | caption | sentence | texts).
  CSV: a header row with the same column names; one row per sentence.
  """
  path = Path(path)
  if not path.is_file():
    raise PrepareError(f'--captions {path}: no such file; expected a JSON or CSV captions file')
  out: dict[str, list[str]] = {}

  def add(key, text, where):
    if isinstance(text, str):
      text = [text]
    if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
      raise PrepareError(f'{path}: {where}: expected a sentence or a list of sentences, '
                         f'got {type(text).__name__}')
    out.setdefault(str(key), []).extend(t.strip() for t in text if t.strip())

  id_keys, text_keys = ('photo_id', 'id', 'image_id'), ('text', 'caption', 'sentence', 'texts')
  if path.suffix.lower() == '.csv':
    with path.open(newline='', encoding='utf-8') as f:
      reader = csv.DictReader(f)
      cols = reader.fieldnames or []
      id_col = next((c for c in id_keys if c in cols), None)
      text_col = next((c for c in text_keys if c in cols), None)
      if id_col is None or text_col is None:
        raise PrepareError(f'{path}: CSV header {cols} must name an id column '
                           f'({" | ".join(id_keys)}) and a text column ({" | ".join(text_keys)})')
      for n, row in enumerate(reader, start=2):
        add(row[id_col], row[text_col] or '', f'line {n}')
    return out
  try:
    data = json.loads(path.read_text(encoding='utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise PrepareError(f'{path}: not valid JSON: {e}') from None
  if isinstance(data, dict):
    for k, v in data.items():
      add(k, v, f'key {k!r}')
  elif isinstance(data, list):
    for n, entry in enumerate(data):
      id_col = next((c for c in id_keys if isinstance(entry, dict) and c in entry), None)
      text_col = next((c for c in text_keys if isinstance(entry, dict) and c in entry), None)
      if id_col is None or text_col is None:
        raise PrepareError(f'{path}: entry {n} must be an object with an id key '
                           f'({" | ".join(id_keys)}) and a text key ({" | ".join(text_keys)})')
      add(entry[id_col], entry[text_col], f'entry {n}')
  else:
    raise PrepareError(f'{path}: expected a JSON object or list, got {type(data).__name__}')
  return out


# The globals a pickle of numpy arrays (Python 2 or 3, numpy 1 or 2, protocols 0-5) refers to.
# Lists, dicts, tuples, numbers and strings need none. Anything else (os.system, eval, a class of
# some package) could run code while unpickling, so it is refused unless --trust_pickle.
SAFE_PICKLE_GLOBALS = frozenset(
    [(f'numpy.{core}.multiarray', name) for core in ('core', '_core')
     for name in ('_reconstruct', 'scalar')]
    + [(f'numpy.{core}.numeric', '_frombuffer') for core in ('core', '_core')]
    + [('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')])


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle that refers to something other than numpy arrays and plain Python data."""


class _DataOnlyUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) not in SAFE_PICKLE_GLOBALS:
      raise UnsafePickleError(f'{module}.{name}')
    return super().find_class(module, name)


def np_load_pickle(path: Path, *, trust: bool = False):
  """Unpickles stroke coordinates. Datasets come from the internet and unpickling can run any
  code, so by default only numpy arrays and plain lists/dicts/tuples/numbers/strings are read;
  `trust` (prepare --trust_pickle) reads anything."""
  unpickler = pickle.Unpickler if trust else _DataOnlyUnpickler
  try:
    with path.open('rb') as f:
      try:
        return unpickler(f).load()
      except UnicodeDecodeError:  # pickled by Python 2 (numpy arrays inside)
        f.seek(0)
        return unpickler(f, encoding='latin1').load()
  except UnsafePickleError as e:
    raise PrepareError(
        f'{path}: refused to unpickle: it refers to {e}, and only numpy arrays and plain '
        'lists/dicts/tuples/numbers/strings are read from a pickle (unpickling anything else can '
        'run code). If you trust this file, pass --trust_pickle.') from None
  except Exception as e:  # pickle raises many types on bad input
    raise PrepareError(f'{path}: cannot unpickle stroke coordinates: {type(e).__name__}: {e}') \
        from None
