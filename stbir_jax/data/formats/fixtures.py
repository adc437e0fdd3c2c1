"""Tiny source trees in each published layout, for tests (and for trying `prepare` quickly).

Every builder writes into `root` and returns it. Photos are small solid-colour images with a
distinct colour per photo; sketches are real files (PNG, JPG, SVG written the way sketch apps
write it, pickles, .npy) of simple shapes.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# A sketch as a sketch app would save it: groups with transforms, absolute and relative
# commands, curves, a white background <rect> (ignored), and a polyline.
SVG_TEMPLATE = '''<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     version="1.1" width="256" height="256" viewBox="0 0 256 256">
  <rect x="0" y="0" width="256" height="256" fill="#ffffff"/>
  <g transform="translate({dx},0)" fill="none" stroke="#000000" stroke-width="3"
     stroke-linecap="round" stroke-linejoin="round">
    <path d="M40,60 L200,60 l0,120 H40 Z"/>
    <path d="m60 100c20-30 60-30 80 0s60 30 80 0"/>
    <polyline points="60,150 100,170 140,150"/>
  </g>
</svg>
'''


def svg_strokes(dx=0):
  """The strokes of SVG_TEMPLATE as polylines (curves sampled), for drawing the PNG twin."""
  t = np.linspace(0, 1, 33)[:, None]

  def cubic(p0, p1, p2, p3):
    p0, p1, p2, p3 = map(np.array, (p0, p1, p2, p3))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t * t * p2 + t ** 3 * p3

  box = np.array([(40, 60), (200, 60), (200, 180), (40, 180), (40, 60)], float)
  c1 = cubic((60, 100), (80, 70), (120, 70), (140, 100))
  c2 = cubic((140, 100), (160, 130), (200, 130), (220, 100))
  wave = np.concatenate([c1, c2[1:]])
  poly = np.array([(60, 150), (100, 170), (140, 150)], float)
  return [s + (dx, 0) for s in (box, wave, poly)]


def write_svg(path, dx=0):
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(SVG_TEMPLATE.format(dx=dx))
  return path


def draw_strokes_png(path, strokes, size=(256, 256), width=3, invert=False):
  """Black-on-white (or the reverse) raster drawing of `strokes`."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  bg, fg = (0, 255) if invert else (255, 0)
  im = Image.new('L', size, bg)
  d = ImageDraw.Draw(im)
  for s in strokes:
    d.line([tuple(p) for p in np.asarray(s)], fill=fg, width=width, joint='curve')
  im.save(path)
  return path


def write_photo(path, colour, size=(40, 30)):
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new('RGB', size, tuple(int(c) for c in colour)).save(path)
  return path


def colour_of(k):
  return ((37 * k + 40) % 256, (91 * k + 80) % 256, (53 * k + 120) % 256)


def strokes_to_xyp(strokes):
  """Strokes -> (N, 3) absolute (x, y, pen) with pen=1 on each stroke's last point."""
  rows = []
  for s in strokes:
    for i, (x, y) in enumerate(s):
      rows.append((x, y, 1.0 if i == len(s) - 1 else 0.0))
  return np.array(rows, np.float32)


def qmul_tree(root, *, svg=False, pickle_variant=False, photo_ext='.png'):
  """QMUL-Shoe-V2 style: trainB/testB photos, trainA/testA sketches <id>_<k>.

  train photos 1001, 1002, 1003 (1003 has no sketch), test photo 2001; sketch 9999_1 has no
  photo. svg=True adds svg/<id>_<k>.svg; pickle_variant=True adds ShoeV2_Coordinate.
  """
  root = Path(root)
  layout = {'train': ['1001', '1002', '1003'], 'test': ['2001']}
  sketched = {'1001': 2, '1002': 1, '2001': 1}
  coords = {}
  for split, pids in layout.items():
    folder_b, folder_a = root / f'{split}B', root / f'{split}A'
    for pid in pids:
      write_photo(folder_b / f'{pid}{photo_ext}', colour_of(int(pid)))
      for n in range(1, sketched.get(pid, 0) + 1):
        strokes = svg_strokes(dx=n)
        draw_strokes_png(folder_a / f'{pid}_{n}.png', strokes)
        if svg:
          write_svg(root / 'svg' / f'{split}A' / f'{pid}_{n}.svg', dx=n)
        coords[f'{split}A/{pid}_{n}'] = strokes_to_xyp(strokes)
  draw_strokes_png(root / 'trainA' / '9999_1.png', svg_strokes())
  if pickle_variant:
    with (root / 'ShoeV2_Coordinate').open('wb') as f:
      pickle.dump(coords, f)
  return root


def qmul_release_tree(root, name='ShoeV2', *, png=True):
  """The SketchX release layout: NAME_photo/, NAME_sketch/ (SVG), NAME_sketch_png/ (png=True)
  and the four split lists; same photos and sketches as qmul_tree (9999_1 has no photo)."""
  root = Path(root)
  photos = {'train': ['1001', '1002', '1003'], 'test': ['2001']}
  sketches = {'train': ['1001_1', '1001_2', '1002_1', '9999_1'], 'test': ['2001_1']}
  for split in ('train', 'test'):
    for pid in photos[split]:
      write_photo(root / f'{name}_photo' / f'{pid}.png', colour_of(int(pid)))
    for sid in sketches[split]:
      dx = int(sid.rpartition('_')[2])
      write_svg(root / f'{name}_sketch' / f'{sid}.svg', dx=dx)
      if png:
        draw_strokes_png(root / f'{name}_sketch_png' / f'{sid}.png', svg_strokes(dx=dx))
    (root / f'photo_{split}.txt').write_text(''.join(f'{p}.png\n' for p in photos[split]))
    (root / f'sketch_{split}.txt').write_text(''.join(f'{s}.svg\n' for s in sketches[split]))
  return root


def sketchy_tree(root):
  """Sketchy: 2 categories; airplane/a1 (2 PNG sketches, 1 also SVG), airplane/a2 (test),
  cat/c1 (1 sketch), cat/c2 (no sketch); a stray sketch cat/zz-1 with no photo."""
  root = Path(root)
  aug = 'tx_000000000000'
  photos = {'airplane': ['a1', 'a2'], 'cat': ['c1', 'c2']}
  for k, (cat, ids) in enumerate(sorted(photos.items())):
    for j, pid in enumerate(ids):
      write_photo(root / 'photo' / aug / cat / f'{pid}.jpg', colour_of(10 * k + j))
  for cat, pid, n in (('airplane', 'a1', 1), ('airplane', 'a1', 2), ('airplane', 'a2', 1),
                      ('cat', 'c1', 1), ('cat', 'zz', 1)):
    draw_strokes_png(root / 'sketch' / aug / cat / f'{pid}-{n}.png', svg_strokes(dx=n))
  write_svg(root / 'svg' / 'airplane' / 'a1-1.svg', dx=1)
  (root / 'testset.txt').write_text('airplane/a2.jpg\n# comment\n\n')
  return root


def fscoco_tree(root):
  """FS-COCO: users 1 and 2; ids 11 (vector+raster+text), 12 (raster only, test), 21 (vector,
  two caption lines), 22 (photo only); vector sketch 99 has no photo."""
  root = Path(root)
  for user, cid in (('1', '11'), ('1', '12'), ('2', '21'), ('2', '22')):
    write_photo(root / 'images' / user / f'{cid}.jpg', colour_of(int(cid)), size=(64, 48))
  strokes = svg_strokes()
  for user, cid in (('1', '11'), ('2', '21'), ('2', '99')):
    (root / 'vector_sketches' / user).mkdir(parents=True, exist_ok=True)
    np.save(root / 'vector_sketches' / user / f'{cid}.npy', strokes_to_xyp(strokes))
  for user, cid in (('1', '11'), ('1', '12')):
    draw_strokes_png(root / 'raster_sketches' / user / f'{cid}.jpg', strokes)
  for user, cid, text in (('1', '11', 'a red bus on a road'),
                          ('2', '21', 'two giraffes near a tree\na blue sky')):
    (root / 'text' / user).mkdir(parents=True, exist_ok=True)
    (root / 'text' / user / f'{cid}.txt').write_text(text)
  (root / 'val_normal.txt').write_text('12\n')
  return root


def manifest_tree(root, lines=None):
  """A manifest.jsonl with photos p0..p3 mixing sketch kinds; returns the manifest path."""
  root = Path(root)
  for k in range(4):
    write_photo(root / 'photos' / f'p{k}.jpg', colour_of(k))
  write_svg(root / 'sk' / 'p0.svg')
  draw_strokes_png(root / 'sk' / 'p0.png', svg_strokes())
  draw_strokes_png(root / 'sk' / 'p1.jpg', svg_strokes(), invert=True)
  (root / 'sk' / 'p2.json').write_text(json.dumps(
      {'strokes': [s.tolist() for s in svg_strokes()]}))
  if lines is None:
    lines = [
        {'image': 'photos/p0.jpg', 'sketches': ['sk/p0.svg', 'sk/p0.png'],
         'texts': ['red shoe'], 'category': 'shoe', 'split': 'train'},
        {'image': 'photos/p1.jpg', 'sketches': ['sk/p1.jpg'], 'category': 'chair',
         'split': 'test'},
        {'image': 'photos/p2.jpg', 'sketches': 'sk/p2.json', 'texts': 'wooden',
         'category': 'chair', 'split': 'validation', 'id': 'two'},
        {'image': 'photos/p3.jpg', 'texts': ['only text'], 'category': 'shoe'},
    ]
  text = '\n'.join(line if isinstance(line, str) else json.dumps(line) for line in lines) + '\n'
  path = root / 'manifest.jsonl'
  path.write_text(text)
  return path


# The line of the PyTorch STBIR_demo's train manifest quoted in issue 17, as it is written.
STBIR_DEMO_LINE = (
    '{"id": "chair:320", "category": "chair", "split": "train", "source": "train", "image": '
    '"datasets/datasets/ChairV2/trainB/320.png", "text": "dark brown velvet cushion, black wood '
    'frame", "positive_sketches": ["datasets/datasets/ChairV2/trainA/320_1.png", '
    '"datasets/datasets/ChairV2/trainA/320_2.png"], "negative_sketches": '
    '["datasets/datasets/ChairV2/trainA/4978688_v1_Cream_2.png"], "negative_images": '
    '["datasets/datasets/ChairV2/trainB/09011396_v1.png"], "negative_texts": ["black suede ankle '
    'boot, laces"], "virtual_class": "21"}')


def bar_strokes(n):
  """n disjoint horizontal bars: a raster sketch whose map numbers its strokes 1..n, so a
  prepared sketch tells which file it came from."""
  return [np.array([(40, 40 + 40 * k), (216, 40 + 40 * k)], float) for k in range(n)]


def stbir_demo_tree(root):
  """The STBIR_demo layout: ROOT/datasets/datasets/{ChairV2,ShoeV2}/{train,test}{A,B} and its
  manifests ROOT/data/{train,val,test}.jsonl with paths relative to ROOT; returns ROOT/data.

    chair:320  train  2 sketches (2 and 3 bars)  virtual_class "21"  the issue's line
    chair:321  train  1 sketch (1 bar)           virtual_class "21"
    shoe:1001  train  1 sketch (4 bars)          virtual_class null
    chair:322  val    1 sketch (5 bars), text "" virtual_class "3"
    chair:400  test   1 sketch (1 bar)           virtual_class "21"
  Photo <n> has colour_of(n). The negatives the lines list do not exist (they are ignored).
  """
  root = Path(root)
  base = 'datasets/datasets'
  photos = {'ChairV2/trainB/320': 320, 'ChairV2/trainB/321': 321, 'ShoeV2/trainB/1001': 1001,
            'ChairV2/trainB/322': 322, 'ChairV2/testB/400': 400}
  for rel, n in photos.items():
    write_photo(root / base / f'{rel}.png', colour_of(n))
  bars = {'ChairV2/trainA/320_1': 2, 'ChairV2/trainA/320_2': 3, 'ChairV2/trainA/321_1': 1,
          'ShoeV2/trainA/1001_1': 4, 'ChairV2/trainA/322_1': 5, 'ChairV2/testA/400_1': 1}
  for rel, n in bars.items():
    draw_strokes_png(root / base / f'{rel}.png', bar_strokes(n), width=5)

  def line(uid, category, split, image, text, sketches, virtual_class):
    return json.dumps({
        'id': uid, 'category': category, 'split': split,
        'source': 'test' if split == 'test' else 'train', 'image': f'{base}/{image}.png',
        'text': text, 'positive_sketches': [f'{base}/{s}.png' for s in sketches],
        'negative_sketches': [], 'negative_images': [], 'negative_texts': [],
        'virtual_class': virtual_class})

  data = root / 'data'
  data.mkdir(parents=True, exist_ok=True)
  (data / 'train.jsonl').write_text('\n'.join([
      STBIR_DEMO_LINE,
      line('chair:321', 'chair', 'train', 'ChairV2/trainB/321', 'light oak frame, cream seat',
           ['ChairV2/trainA/321_1'], '21'),
      line('shoe:1001', 'shoe', 'train', 'ShoeV2/trainB/1001', 'black suede ankle boot, laces',
           ['ShoeV2/trainA/1001_1'], None)]) + '\n')
  (data / 'val.jsonl').write_text(line('chair:322', 'chair', 'val', 'ChairV2/trainB/322', '',
                                       ['ChairV2/trainA/322_1'], '3') + '\n')
  (data / 'test.jsonl').write_text(line('chair:400', 'chair', 'test', 'ChairV2/testB/400',
                                        'grey fabric armchair', ['ChairV2/testA/400_1'],
                                        '21') + '\n')
  return data
