"""STBIR_demo manifests: the JSONL files the PyTorch STBIR_demo writes, read as they are.

One JSON object per photo, with paths relative to the folder STBIR_demo ran in (--root):

  {"id": "chair:320", "category": "chair", "split": "train", "source": "train",
   "image": "datasets/datasets/ChairV2/trainB/320.png", "text": "dark brown velvet cushion",
   "positive_sketches": ["datasets/datasets/ChairV2/trainA/320_1.png", ...],
   "negative_sketches": [...], "negative_images": [...], "negative_texts": [...],
   "virtual_class": "21"}

`--src` is one .jsonl file or a folder whose *.jsonl files are all read (STBIR_demo writes
train.jsonl, val.jsonl and test.jsonl). Mapping (docs/datasets.md has the table): `id` is the
photo id; `split` train | val | test (val -> validation); `image` the photo;
`positive_sketches` its sketches; `text` its one text ("" = none); `category` its category;
`virtual_class` (a cluster of similar photos within the category, from which STBIR_demo draws
its hard negatives) becomes the record's `family`, one id per (category, virtual_class), -1
where null, so that `data.family_group > 1` puts photos of one cluster in the same batches; the
three negative lists are ignored (one note in the report says so); `source` is ignored.

Paths are resolved against --root (default: the current directory, as STBIR_demo resolves
them); a path that leaves --root ('..', or an absolute path elsewhere) is an error. Errors name
the file and line: bad JSON, unknown keys, wrong types, an unknown split, duplicate ids (across
files too), and missing files (with --allow_missing a missing sketch is skipped and a missing
photo drops the line, both recorded in the report).
"""

from __future__ import annotations

import os
from pathlib import Path

from stbir_jax.data.formats import common
from stbir_jax.data.names import SPLITS

KEYS = ('id', 'category', 'split', 'source', 'image', 'text', 'positive_sketches',
        'negative_sketches', 'negative_images', 'negative_texts', 'virtual_class')
REQUIRED = ('id', 'category', 'split', 'image')
NEGATIVES = ('negative_sketches', 'negative_images', 'negative_texts')
SOURCE_SPLITS = {**{split: split for split in SPLITS}, 'val': 'validation'}  # STBIR_demo's 'val'


def _manifest_files(src: Path) -> list:
  if src.is_dir():
    found = sorted(src.glob('*.jsonl'))
    if not found:
      raise common.PrepareError(f'{src}: no .jsonl file in this folder; expected the STBIR_demo '
                                'manifests (train.jsonl, val.jsonl, test.jsonl) or one of them')
    return found
  if not src.is_file():
    raise common.PrepareError(f'{src}: no such manifest file; expected an STBIR_demo JSONL file')
  return [src]


def _root(options: common.Options) -> Path:
  root = Path(options.root).expanduser() if options.root else Path.cwd()
  if not root.is_dir():
    raise common.PrepareError(f'--root {root}: no such directory; expected the folder the '
                              'STBIR_demo manifest paths are relative to')
  return root


def _inside(root: Path, rel: str, where: str, what: str) -> Path:
  """root/rel, refused when it leaves root. Lexical (no symlink resolution), so a dataset folder
  linked into the root stays readable while '..' and foreign absolute paths do not."""
  path = Path(os.path.normpath(Path(os.path.abspath(root)) / rel))
  if not path.is_relative_to(os.path.abspath(root)):
    raise common.PrepareError(f'{where}: {what} {rel!r} resolves to {path}, outside --root '
                              f'{root}; paths must stay inside the dataset root')
  return path


def _check_types(obj: dict, where: str) -> None:
  unknown = sorted(set(obj) - set(KEYS))
  if unknown:
    raise common.PrepareError(f'{where}: unknown key(s) {unknown}; STBIR_demo keys: '
                              f'{", ".join(KEYS)}')
  for key in REQUIRED:
    if not isinstance(obj.get(key), str) or not obj[key]:
      raise common.PrepareError(f'{where}: "{key}" (a non-empty string) is required')
  if obj['split'] not in SOURCE_SPLITS:
    raise common.PrepareError(f'{where}: split {obj["split"]!r}; valid: train, val, test')
  for key in ('text', 'source'):
    if not isinstance(obj.get(key, ''), str):
      raise common.PrepareError(f'{where}: "{key}" must be a string')
  for key in ('positive_sketches',) + NEGATIVES:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
      raise common.PrepareError(f'{where}: "{key}" must be a list of strings')
  virtual_class = obj.get('virtual_class')
  if virtual_class is not None and (isinstance(virtual_class, bool)
                                    or not isinstance(virtual_class, (str, int))):
    raise common.PrepareError(f'{where}: "virtual_class" must be a string or null')


def read(src: Path, report: common.Report, options: common.Options):
  root = _root(options)
  items, seen, clusters = [], {}, {}
  with_negatives = 0
  for _, where, obj in (x for f in _manifest_files(src) for x in common.jsonl_objects(f)):
    _check_types(obj, where)
    photo_id = obj['id']
    if photo_id in seen:
      raise common.PrepareError(f'{where}: duplicate id {photo_id!r} (first at {seen[photo_id]})')
    seen[photo_id] = where
    with_negatives += any(obj.get(k) for k in NEGATIVES)

    image = _inside(root, obj['image'], where, 'image')
    if not image.is_file():
      if not options.allow_missing:
        raise common.PrepareError(
            f'{where}: image {obj["image"]!r} not found (resolved to {image})')
      report.unreadable_file(image, f'{where}: image not found; line skipped')
      continue
    sketches = []
    for k, rel in enumerate(obj.get('positive_sketches', [])):
      path = _inside(root, rel, where, 'sketch')
      if not path.is_file():
        if not options.allow_missing:
          raise common.PrepareError(f'{where}: sketch {rel!r} not found (resolved to {path})')
        report.unreadable_file(path, f'{where}: sketch not found; skipped')
        continue
      sketches.append(common.SketchRef(f'{photo_id}#{k}', path=path))
    text = obj.get('text', '').strip()
    item = common.Item(photo_id=photo_id, image=image, split=SOURCE_SPLITS[obj['split']],
                       category=obj['category'], sketches=sketches, texts=[text] if text else [])
    if obj.get('virtual_class') is not None:
      clusters.setdefault((obj['category'], str(obj['virtual_class'])), []).append(item)
    items.append(item)
  if not items:
    raise common.PrepareError(f'{src}: no photos listed; expected one JSON object per line')

  # Dense family ids in sorted (category, virtual_class) order: stable under re-preparation.
  for family, key in enumerate(sorted(clusters)):
    for item in clusters[key]:
      item.family = family
  report.notes.append(
      f'stbir_demo: negative_sketches/negative_images/negative_texts ignored ({with_negatives} '
      f'of {len(seen)} lines list some); negatives come from the batch, and from the same '
      f'virtual_class with data.family_group > 1 ({len(clusters)} virtual classes -> family ids)')
  return items, sorted({i.category for i in items})
