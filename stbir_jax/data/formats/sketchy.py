"""Sketchy (Sangkloy et al. 2016): 125 categories, ~5 sketches per photo.

Layout:

  SRC/photo/tx_000000000000/<category>/<photo>.jpg
  SRC/sketch/tx_000000000000/<category>/<photo>-<n>.png
  SRC/svg/<category>/<photo>-<n>.svg   (optional; the `sketches-06-04` SVG release, also found
                                        as SRC/sketches/<category>/...)
  SRC/testset.txt or SRC/info/testset.txt (or --split_file): the standard test split, one
      `<category>/<photo>` per line (a trailing .jpg is accepted); every other photo is train.

Only the un-augmented `tx_000000000000` folders are read. A sketch present as both SVG and PNG
is read from the SVG (it has the real stroke order). Photo ids are `<category>/<photo>`; a
--captions file may use either that or `<photo>`.
"""

from __future__ import annotations

from pathlib import Path

from stbir_jax.data import sketch_io
from stbir_jax.data.formats import common

AUG = 'tx_000000000000'
SPLIT_CANDIDATES = ('testset.txt', 'info/testset.txt', 'test_split.txt')


def read(src: Path, report: common.Report, options: common.Options):
  photo_root = common.require_dir(src / 'photo' / AUG, '<category>/<photo>.jpg photos (Sketchy)')
  categories = sorted(p.name for p in photo_root.iterdir() if p.is_dir())
  if not categories:
    raise common.PrepareError(f'{photo_root}: no <category>/ folders found (Sketchy layout)')
  photos = {}
  for cat in categories:
    for p in common.files(photo_root / cat, common.PHOTO_EXTENSIONS):
      photos[f'{cat}/{p.stem}'] = p

  split_file = common.find_split_file(src, options, SPLIT_CANDIDATES,
                                      'a text file of <category>/<photo> lines (the test photos)')
  test = set(common.read_id_list(split_file))
  unknown = sorted(test - set(photos))
  for t in unknown:
    report.notes.append(f'{split_file}: test entry {t!r} matches no photo')

  sketches = {}  # '<category>/<photo>-<n>' -> SketchRef
  roots = [(src / 'sketch' / AUG, sketch_io.RASTER_EXTENSIONS)]
  roots += [(src / d, ('.svg',)) for d in ('svg', 'sketches')]
  for root, exts in roots:  # later roots (SVG) replace earlier ones (PNG)
    if not root.is_dir():
      continue
    for cat_dir in sorted(p for p in root.iterdir() if p.is_dir()):
      for p in common.files(cat_dir, exts):
        key = f'{cat_dir.name}/{p.stem}'
        sketches[key] = common.SketchRef(key, path=p)
  if not sketches:
    report.notes.append(f'{src}: no sketches found under sketch/{AUG}/, svg/ or sketches/')

  per_photo = {pid: [] for pid in photos}
  for key, ref in sorted(sketches.items()):
    pid = key.rpartition('-')[0] or key
    if pid not in per_photo:
      report.sketches_without_photo.append(str(ref.path))
      continue
    per_photo[pid].append(ref)

  items = [
      common.Item(photo_id=pid, image=path, split='test' if pid in test else 'train',
                  category=pid.split('/')[0], sketches=per_photo[pid],
                  caption_keys=(pid.split('/', 1)[1],))
      for pid, path in sorted(photos.items())
  ]
  return items, categories
