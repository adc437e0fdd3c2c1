"""JSONL manifest: one JSON object per line, one line per photo.

  {"image": "photos/a.jpg",                       required; the photo
   "sketches": ["sk/a_1.svg", "sk/a_2.png"],      optional; PNG/JPG/SVG/stroke JSON (.json)/.npy
   "texts": ["red leather upper"],                optional; a string counts as one text
   "category": "shoe",                            optional; default "object"
   "split": "train",                              optional; train | validation | test
   "id": "a"}                                     optional; default: image path without extension

Relative paths are resolved against the manifest file's folder, and must stay inside it: an
absolute path or one that climbs out (`../x.png`) is refused, naming the line, unless
--allow_outside_root (a manifest from the internet could otherwise read any file of the machine
into the dataset; the check is on the path as written, symbolic links are followed). Blank lines
and lines starting with '#' are skipped. Without "split" a photo goes to test when
sha1(id) % 100 < 10, else to train (deterministic 90/10). Errors name the manifest line: bad JSON,
a missing "image", an unknown key, wrong types, duplicate ids, and files that do not exist (with
--allow_missing a missing sketch is skipped and a missing photo drops the line, both recorded in
the report).
"""

from __future__ import annotations

import os
from pathlib import Path

from stbir_jax.data.formats import common
from stbir_jax.data.names import SPLITS

KEYS = ('image', 'sketches', 'texts', 'category', 'split', 'id')
DEFAULT_CATEGORY = 'object'


def _strings(where: str, key: str, value) -> list:
  """A manifest field that holds a string or a list of strings, as a list."""
  if isinstance(value, str):
    return [value]
  if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
    raise common.PrepareError(f'{where}: "{key}" must be a string or a list of strings')
  return value


def read(src: Path, report: common.Report, options: common.Options):
  if src.is_dir():
    candidates = sorted(src.glob('*.jsonl'))
    if len(candidates) != 1:
      raise common.PrepareError(f'{src}: expected a .jsonl manifest file (or a folder with exactly '
                                f'one), found {[c.name for c in candidates]}')
    src = candidates[0]
  if not src.is_file():
    raise common.PrepareError(f'{src}: no such manifest file; expected a JSONL file')
  base = src.parent

  def inside(where, key, rel) -> Path:
    """base / rel, refused when `rel` leaves the manifest's folder."""
    path = base / rel
    root = os.path.abspath(base)
    if not options.allow_outside_root and (
        Path(rel).is_absolute() or os.path.commonpath([root, os.path.abspath(path)]) != root):
      raise common.PrepareError(
          f'{where}: {key} {rel!r} is outside the manifest\'s folder {base}; paths must be '
          'relative and stay inside it (pass --allow_outside_root to read it anyway)')
    return path
  items, seen = [], {}
  for n, where, obj in common.jsonl_objects(src, skip_comments=True):
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
      hint = ('; this is an STBIR_demo line: use --format=stbir_demo'
              if 'positive_sketches' in obj else '')
      raise common.PrepareError(
          f'{where}: unknown key(s) {unknown}; valid keys: {", ".join(KEYS)}{hint}')
    if not isinstance(obj.get('image'), str) or not obj['image']:
      raise common.PrepareError(f'{where}: "image" (a path string) is required')

    image = inside(where, 'image', obj['image'])
    if not image.is_file():
      if not options.allow_missing:
        raise common.PrepareError(
            f'{where}: image {obj["image"]!r} not found (resolved to {image})')
      report.unreadable_file(image, f'{where}: image not found; line skipped')
      continue
    photo_id = obj.get('id', str(Path(obj['image']).with_suffix('')))
    if not isinstance(photo_id, str) or not photo_id:
      raise common.PrepareError(f'{where}: "id" must be a non-empty string')
    if photo_id in seen:
      raise common.PrepareError(
          f'{where}: duplicate id {photo_id!r} (first on line {seen[photo_id]})')
    seen[photo_id] = n
    split = obj.get('split', common.hash_split(photo_id))
    if split not in SPLITS:
      raise common.PrepareError(f'{where}: split {split!r}; valid: {", ".join(SPLITS)}')
    category = obj.get('category', DEFAULT_CATEGORY)
    if not isinstance(category, str) or not category:
      raise common.PrepareError(f'{where}: "category" must be a non-empty string')

    sketches = []
    for k, rel in enumerate(_strings(where, 'sketches', obj.get('sketches', []))):
      path = inside(where, 'sketch', rel)
      if not path.is_file():
        if not options.allow_missing:
          raise common.PrepareError(f'{where}: sketch {rel!r} not found (resolved to {path})')
        report.unreadable_file(path, f'{where}: sketch not found; skipped')
        continue
      sketches.append(common.SketchRef(f'{photo_id}#{k}', path=path))
    texts = [t.strip() for t in _strings(where, 'texts', obj.get('texts', [])) if t.strip()]
    items.append(common.Item(photo_id=photo_id, image=image, split=split, category=category,
                             sketches=sketches, texts=texts))
  if not items:
    raise common.PrepareError(f'{src}: no photos listed; expected one JSON object per line')
  return items, sorted({i.category for i in items})
