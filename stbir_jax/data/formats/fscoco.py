"""FS-COCO (Chowdhury et al., ECCV 2022): 10,000 scene sketches of MS-COCO photos + captions.

Layout of the release (fscoco.tar.gz), one folder per participant (1..100):

  SRC/images/<user>/<coco id>.jpg
  SRC/raster_sketches/<user>/<coco id>.jpg
  SRC/vector_sketches/<user>/<coco id>.npy   (N, 3) absolute (x, y, pen), pen=1 ends a stroke
                                             (2 = end of drawing)
  SRC/text/<user>/<coco id>.txt              the sketcher's caption (each non-empty line a text)
  SRC/val_normal.txt                         test split: one COCO id per line (the "normal"
                                             split of the paper);
                                             --split_file=SRC/val_unseen_user.txt selects the
                                             unseen-user split instead.

The test split list is stored as split 'test'; everything else is 'train'. A sketch present as
both vector and raster is read from the vector file (real stroke order). One category, 'scene'.
Photo ids are COCO image ids (the file stems).
"""

from __future__ import annotations

from pathlib import Path

from stbir_jax.data import sketch_io
from stbir_jax.data.formats import common

CATEGORY = 'scene'
SPLIT_CANDIDATES = ('val_normal.txt',)


def _by_stem(folder: Path, exts):
  return {p.stem: p for p in common.files(folder, exts, recursive=True)} if folder.is_dir() else {}


def read(src: Path, report: common.Report, options: common.Options):
  images = _by_stem(common.require_dir(src / 'images', '<user>/<coco id>.jpg photos (FS-COCO)'),
                    common.PHOTO_EXTENSIONS)
  if not images:
    raise common.PrepareError(f'{src / "images"}: no <user>/<coco id>.jpg photos found (FS-COCO)')
  raster = _by_stem(src / 'raster_sketches', sketch_io.RASTER_EXTENSIONS)
  vector = _by_stem(src / 'vector_sketches', ('.npy',))
  texts = _by_stem(src / 'text', ('.txt',))
  if not raster and not vector:
    report.notes.append(f'{src}: no raster_sketches/ or vector_sketches/ found')
  test = set(common.read_id_list(common.find_split_file(
      src, options, SPLIT_CANDIDATES, 'a text file with one COCO id per line (the test split)')))

  sketch_files = {**raster, **vector}  # vector wins
  for sid, path in sorted(sketch_files.items()):
    if sid not in images:
      report.sketches_without_photo.append(str(path))
  for tid, path in sorted(texts.items()):
    if tid not in images:
      report.captions_without_photo.append(str(path))

  items = []
  for pid, path in sorted(images.items()):
    sentences = []
    if pid in texts:
      try:
        sentences = [line.strip() for line in texts[pid].read_text(encoding='utf-8').splitlines()
                     if line.strip()]
      except (OSError, UnicodeDecodeError) as e:
        report.unreadable_file(texts[pid], e)
    sketches = [common.SketchRef(pid, path=sketch_files[pid])] if pid in sketch_files else []
    items.append(common.Item(photo_id=pid, image=path, split='test' if pid in test else 'train',
                             category=CATEGORY, sketches=sketches, texts=sentences))
  return items, [CATEGORY]
