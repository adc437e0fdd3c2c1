"""QMUL-Shoe-V2 / QMUL-Chair-V2 (fine-grained SBIR; one category each).

Layout (as distributed; any subset of the sketch variants may be present):

  SRC/trainB/<photo id>.png|.jpg        train photos
  SRC/testB/<photo id>.png|.jpg         test photos
  SRC/photo/<photo id>.png|.jpg         photos without a split folder (split from their sketches)
  SRC/trainA/<photo id>_<k>.png|.jpg|.svg   train sketches
  SRC/testA/<photo id>_<k>.png|.jpg|.svg    test sketches
  SRC/sketch/<photo id>_<k>.png|.jpg    sketches without a split folder
  SRC/svg/[trainA|testA/]<photo id>_<k>.svg  the SVG variant
  SRC/*Coordinate*, SRC/*.pkl, SRC/*.pickle  the pickled stroke-coordinate variant: a dict
      {'trainA/<photo id>_<k>' or '<photo id>_<k>': (N, 3) array of absolute (x, y, pen)}

A sketch named `<photo id>_<k>` belongs to photo `<photo id>`. When one sketch exists in several
variants the one with real stroke order wins: SVG, then pickled coordinates, then raster.
"""

from __future__ import annotations

from pathlib import Path

from stbir_jax.data import sketch_io
from stbir_jax.data.formats import common

_SVG, _PICKLE, _RASTER = 2, 1, 0


def _photo_of(name: str) -> str:
  base, sep, k = name.rpartition('_')
  return base if sep and k.isdigit() else name


def _split_hint(text: str):
  text = text.lower()
  if 'train' in text:
    return 'train'
  if 'test' in text:
    return 'test'
  return None


def read(src: Path, report: common.Report, options: common.Options, category: str):
  del options
  photos = {}
  for split, folder in (('train', 'trainB'), ('test', 'testB'), (None, 'photo')):
    if (src / folder).is_dir():
      for p in common.files(src / folder, common.PHOTO_EXTENSIONS):
        if p.stem in photos:
          report.notes.append(f'{p}: duplicate photo id {p.stem!r}; kept {photos[p.stem][0]}')
          continue
        photos[p.stem] = (p, split)
  if not photos:
    raise common.PrepareError(
        f'{src}: no photos found; expected trainB/ and testB/ (or photo/) holding '
        f'<photo id>{"|".join(common.PHOTO_EXTENSIONS)} files (QMUL-{category.title()}-V2 layout)')

  sketches = {}  # name -> (priority, SketchRef, split hint)

  def offer(name, ref, hint, priority):
    if name not in sketches or sketches[name][0] < priority:
      sketches[name] = (priority, ref, hint)

  for folder in ('trainA', 'testA', 'sketch'):
    if (src / folder).is_dir():
      for p in common.files(src / folder, sketch_io.RASTER_EXTENSIONS + ('.svg',)):
        offer(p.stem, common.SketchRef(p.stem, path=p), _split_hint(folder),
              _SVG if p.suffix.lower() == '.svg' else _RASTER)
  if (src / 'svg').is_dir():
    for p in common.files(src / 'svg', ('.svg',), recursive=True):
      offer(p.stem, common.SketchRef(p.stem, path=p), _split_hint(p.parent.name), _SVG)

  pickles = [p for p in sorted(src.iterdir()) if p.is_file() and (
      'coordinate' in p.name.lower() or p.suffix.lower() in ('.pkl', '.pickle'))]
  for pk in pickles:
    data = common.np_load_pickle(pk)
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
      raise common.PrepareError(
          f'{pk}: expected a pickled dict mapping sketch name (e.g. "trainA/<photo id>_1") to an '
          f'(N, 3) array of absolute (x, y, pen) rows; got {type(data).__name__}'
          + (' with non-string keys' if isinstance(data, dict) else ''))
    for key, value in sorted(data.items()):
      where = f'{pk}:{key}'
      try:
        strokes = sketch_io.strokes_from_array(value, name=where)
      except sketch_io.SketchError as e:
        report.unreadable_file(where, e)
        continue
      name = Path(key).stem
      offer(name, common.SketchRef(name, strokes=strokes), _split_hint(str(Path(key).parent)),
            _PICKLE)

  per_photo = {pid: [] for pid in photos}
  hints = {}
  for name, (_, ref, hint) in sorted(sketches.items()):
    pid = _photo_of(name)
    if pid not in photos:
      report.sketches_without_photo.append(str(ref.path) if ref.path else name)
      continue
    per_photo[pid].append(ref)
    if hint:
      hints.setdefault(pid, hint)

  items = []
  for pid, (path, split) in sorted(photos.items()):
    if split is None:
      split = hints.get(pid)
      if split is None:
        split = common.hash_split(pid)
        report.notes.append(f'{path}: no split folder or split-tagged sketch; hash split -> {split}')
    items.append(common.Item(photo_id=pid, image=path, split=split, category=category,
                             sketches=per_photo[pid]))
  return items, [category]


def read_shoev2(src, report, options):
  return read(src, report, options, 'shoe')


def read_chairv2(src, report, options):
  return read(src, report, options, 'chair')
