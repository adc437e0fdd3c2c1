"""QMUL-Shoe-V2 / QMUL-Chair-V2 (fine-grained SBIR; one category each).

Layouts (as distributed; any mix of them and any subset of the sketch variants may be present):

  The SketchX release (ShoeV2_F / ChairV2 archives; NAME is ShoeV2 or ChairV2):
  SRC/NAME_photo/<photo id>.png|.jpg    photos
  SRC/NAME_sketch/<photo id>_<k>.svg    sketches (SVG; PNG/JPG also read)
  SRC/NAME_sketch_png/<photo id>_<k>.png    (optional) the same sketches rasterised
  SRC/photo_train.txt, photo_test.txt   split lists: one photo file name per line
  SRC/sketch_train.txt, sketch_test.txt split lists: one sketch file name per line

  The train/test folder layout used by most FG-SBIR code:
  SRC/trainB/<photo id>.png|.jpg        train photos
  SRC/testB/<photo id>.png|.jpg         test photos
  SRC/photo/<photo id>.png|.jpg         photos without a split folder (split from their sketches)
  SRC/trainA/<photo id>_<k>.png|.jpg|.svg   train sketches
  SRC/testA/<photo id>_<k>.png|.jpg|.svg    test sketches
  SRC/sketch/<photo id>_<k>.png|.jpg    sketches without a split folder
  SRC/svg/[trainA|testA/]<photo id>_<k>.svg  the SVG variant
  SRC/*Coordinate*, SRC/*.pkl, SRC/*.pickle  the pickled stroke-coordinate variant: a dict
      {'trainA/<photo id>_<k>' or '<photo id>_<k>': (N, 3) array of absolute (x, y, pen)};
      only numpy arrays and plain Python data are unpickled unless prepare --trust_pickle

A sketch named `<photo id>_<k>` belongs to photo `<photo id>`. When one sketch exists in several
variants the one with real stroke order wins: SVG, then pickled coordinates, then raster.
A photo's split comes from, in order: its folder (trainB/testB), the photo split lists, its
sketches' folders, split lists or pickle keys, else a hash of its id (noted in the report).
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


def _release_folders(src: Path, suffix: str) -> list[str]:
  """Folders of the SketchX release named <dataset>_<suffix> (ShoeV2_photo, ChairV2_sketch)."""
  return [p.name for p in sorted(src.iterdir()) if p.is_dir() and p.name.endswith(f'_{suffix}')]


def _entry_stem(entry: str) -> str:
  """A split-list entry ('ShoeV2_sketch/2429245009_1.svg', '2429245009.png') -> its file stem."""
  p = Path(entry)
  return p.stem if p.suffix.lower() in common.PHOTO_EXTENSIONS + sketch_io.SKETCH_EXTENSIONS \
      else p.name


def _split_lists(src: Path, kind: str) -> dict:
  """{stem: split} from SRC/<kind>_train.txt and SRC/<kind>_test.txt (the release's lists)."""
  out = {}
  for split in ('train', 'test'):
    path = src / f'{kind}_{split}.txt'
    if not path.is_file():
      continue
    for stem in map(_entry_stem, common.read_id_list(path)):
      if out.get(stem, split) != split:
        raise common.PrepareError(f'{path}: {stem!r} is also in {kind}_{out[stem]}.txt; expected '
                                  'each name in one split list')
      out[stem] = split
  return out


def read(src: Path, report: common.Report, options: common.Options, category: str):
  photos = {}
  photo_folders = [('train', 'trainB'), ('test', 'testB'), (None, 'photo')]
  photo_folders += [(None, f) for f in _release_folders(src, 'photo')]
  for split, folder in photo_folders:
    if (src / folder).is_dir():
      for p in common.files(src / folder, common.PHOTO_EXTENSIONS):
        if p.stem in photos:
          report.notes.append(f'{p}: duplicate photo id {p.stem!r}; kept {photos[p.stem][0]}')
          continue
        photos[p.stem] = (p, split)
  if not photos:
    raise common.PrepareError(
        f'{src}: no photos found; expected <Dataset>_photo/, trainB/ and testB/, or photo/ '
        f'holding <photo id>{"|".join(common.PHOTO_EXTENSIONS)} files '
        f'(QMUL-{category.title()}-V2 layout)')
  photo_lists = _split_lists(src, 'photo')
  sketch_lists = _split_lists(src, 'sketch')
  for stem in sorted(set(photo_lists) - set(photos)):
    report.notes.append(f'{src}: photo split lists name {stem!r}, which matches no photo')

  sketches = {}  # name -> (priority, SketchRef, split hint)

  def offer(name, ref, hint, priority):
    if name not in sketches or sketches[name][0] < priority:
      sketches[name] = (priority, ref, hint)

  sketch_folders = ['trainA', 'testA', 'sketch'] + _release_folders(src, 'sketch') \
      + _release_folders(src, 'sketch_png')
  for folder in sketch_folders:
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
    data = common.np_load_pickle(pk, trust=options.trust_pickle)
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
    hint = hint or sketch_lists.get(name)
    if hint:
      hints.setdefault(pid, hint)

  items = []
  for pid, (path, split) in sorted(photos.items()):
    listed = photo_lists.get(pid)
    if split and listed and listed != split:
      report.notes.append(f'{path}: in a {split} folder but listed in photo_{listed}.txt; '
                          f'kept {split}')
    if split is None:
      split = listed or hints.get(pid)
      if split is None:
        split = common.hash_split(pid)
        report.notes.append(f'{path}: no split folder, split list or split-tagged sketch; '
                            f'hash split -> {split}')
    items.append(common.Item(photo_id=pid, image=path, split=split, category=category,
                             sketches=per_photo[pid]))
  return items, [category]


def read_shoev2(src, report, options):
  return read(src, report, options, 'shoe')


def read_chairv2(src, report, options):
  return read(src, report, options, 'chair')
