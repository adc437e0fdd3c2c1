r"""Turns a real dataset into the STBIR record format (see schema.py and docs/datasets.md).

  python -m stbir_jax.data.prepare --format=shoev2 --src=/data/ShoeV2 --out=~/tensorflow_datasets \
      [--resolution=224] [--captions=captions.json] [--split_file=FILE] [--name=NAME] [--overwrite]
      [--raster_mode=components|single] [--root=DIR (stbir_demo)] [--trust_pickle]
      [--allow_outside_root]

Reads the source in its published layout (stbir_jax/data/formats/), decodes every photo
(aspect-preserving resize, padded to a square with white, centred) and sketch (stroke-order map,
stbir_jax/data/sketch_io.py), writes DATA_DIR/NAME/1.0.0 (TFDS, array_record) and a validation
report, printed and saved as DATA_DIR/NAME/validation_report.json. Read the result with
stbir_jax.data.prepared.data_source(DATA_DIR, NAME, split).

Sources are untrusted data: pickles are read as plain data only (--trust_pickle for more),
manifest paths must stay inside the manifest's folder (--allow_outside_root), photos larger than
MAX_PHOTO_PIXELS (from the header) are listed as unreadable, and the dataset is built in a
temporary folder that replaces DATA_DIR/NAME only once complete (--overwrite keeps the old one
until then).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from absl import flags
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from stbir_jax import cli
from stbir_jax.data import formats, prepared, sketch_io
from stbir_jax.data.formats import common

PAD_COLOUR = (255, 255, 255)
# Photos larger than this many pixels are listed as unreadable, checked from the header before
# decoding: a 100 KB PNG can claim 30000 x 30000 pixels (2.7 GB decoded). 8192 x 8192 is far above
# any photo of the supported datasets.
MAX_PHOTO_PIXELS = 8192 * 8192


def load_photo(path, resolution: int) -> np.ndarray:
  """Photo -> uint8 (R, R, 3): aspect kept, longer side = R, centred on white padding."""
  try:
    with Image.open(path) as im:  # reads the header only
      if im.width * im.height > MAX_PHOTO_PIXELS:
        raise sketch_io.SketchError(
            f'{path}: photo of {im.width} x {im.height} pixels exceeds the limit of '
            f'{MAX_PHOTO_PIXELS} pixels (a decompression bomb?); not decoded')
      im.load()
      if im.mode in ('RGBA', 'LA', 'PA') or 'transparency' in im.info:
        rgba = im.convert('RGBA')
        im = Image.new('RGB', rgba.size, PAD_COLOUR)
        im.paste(rgba, mask=rgba.split()[3])
      else:
        im = im.convert('RGB')
      im = ImageOps.pad(im, (resolution, resolution), method=Image.Resampling.BICUBIC,
                        color=PAD_COLOUR)
  except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as e:
    raise sketch_io.SketchError(f'{path}: unreadable photo: {e}') from None
  return np.asarray(im, dtype=np.uint8)


def _sketch_map(ref: common.SketchRef, resolution: int, raster_mode: str) -> np.ndarray:
  if ref.strokes is not None:
    return sketch_io.render_strokes(ref.strokes, resolution)
  return sketch_io.load_sketch(ref.path, resolution, raster_mode=raster_mode)


def _apply_captions(items, captions, report):
  used = set()
  for item in items:
    for key in (item.photo_id,) + tuple(item.caption_keys):
      if key in captions:
        item.texts = list(item.texts) + captions[key]
        used.add(key)
        break
  report.captions_without_photo.extend(k for k in captions if k not in used)


def _examples(items, split, resolution, raster_mode, category_ids, report, progress):
  for item in tqdm(items, desc=f'{split}', unit='photo', disable=not progress):
    try:
      image = load_photo(item.image, resolution)
    except sketch_io.SketchError as e:
      report.unreadable_file(item.image, e)
      continue
    maps = []
    for ref in item.sketches:
      try:
        maps.append(_sketch_map(ref, resolution, raster_mode))
      except (sketch_io.SketchError, Image.DecompressionBombError) as e:
        report.unreadable_file(ref.path or ref.name, e)
    if not maps:
      report.photos_without_sketch.append(item.photo_id)
    sketches = np.stack(maps) if maps else np.zeros((0, resolution, resolution, 1), np.uint8)
    report.count(split, item.category, len(maps), len(item.texts))
    yield item.photo_id, dict(
        image=image, sketches=sketches, texts=list(item.texts),
        category=category_ids[item.category], family=item.family,
        instance=item.instance, photo_id=item.photo_id)


def prepare(format: str, src, out, *,  # pylint: disable=redefined-builtin
            resolution: int = 224, captions=None, split_file=None, name=None,
            overwrite=False, allow_missing=False, raster_mode='components',
            root=None, trust_pickle=False, allow_outside_root=False, progress=True) -> dict:
  """Reads `src` in `format`, writes OUT/NAME/1.0.0 and the report; returns the report dict."""
  reader = formats.get(format)
  name = name or format
  if not re.fullmatch(r'[a-z][a-z0-9_]*', name):
    raise common.PrepareError(f'--name {name!r}: expected lower-case letters, digits and _ '
                              '(a TFDS dataset name)')
  if resolution < 8:
    raise common.PrepareError(f'--resolution {resolution}: expected at least 8 pixels')
  if raster_mode not in sketch_io.RASTER_MODES:
    raise common.PrepareError(f'--raster_mode {raster_mode!r}: expected one of '
                              f'{", ".join(sketch_io.RASTER_MODES)}')
  if root and format != 'stbir_demo':
    raise common.PrepareError(f'--root {root}: only --format=stbir_demo reads paths relative to '
                              f'a root; {format} paths are relative to --src')
  src = Path(src).expanduser()
  if not src.exists():
    raise common.PrepareError(f'--src {src}: no such file or directory; expected the {format} '
                              'dataset in its published layout (docs/datasets.md)')
  out = prepared.resolve_data_dir(str(Path(out).expanduser()) if out else out)
  if prepared.dataset_dir(out, name).exists() and not overwrite:
    raise FileExistsError(f'{prepared.dataset_dir(out, name)} already exists; pass --overwrite '
                          'to replace it')
  report = common.Report()
  items, category_names = reader(src, report, common.Options(
      split_file=split_file, allow_missing=allow_missing, root=root, trust_pickle=trust_pickle,
      allow_outside_root=allow_outside_root))
  if captions:
    _apply_captions(items, common.load_captions(captions), report)

  ids = [i.photo_id for i in items]
  if len(set(ids)) != len(ids):
    dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
    raise common.PrepareError(f'{src}: duplicate photo ids {dup}')
  for n, item in enumerate(sorted(items, key=lambda i: i.photo_id)):
    item.instance = n  # unique over all splits, stable under re-preparation
  category_ids = {c: k for k, c in enumerate(category_names)}
  by_split = {}
  for item in items:
    by_split.setdefault(item.split, []).append(item)


  def final_report(path):
    result = report.as_dict()
    result.update(format=format, name=name, src=str(src), resolution=resolution,
                  raster_mode=raster_mode, category_names=list(category_names), data=str(path))
    return result

  path = prepared.write(
      out, name, resolution, category_names,
      {s: _examples(v, s, resolution, raster_mode, category_ids, report, progress)
       for s, v in sorted(by_split.items())},
      overwrite=overwrite, report=final_report)
  result = final_report(path)
  if progress:
    print(report.summary())
    print(f'wrote {path}; report: {path.parent / prepared.REPORT_FILE}')
  return result


PROG = 'prepare'  # errors read `prepare: error: ...`


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_enum('format', None, formats.FORMATS, "the source's layout (docs/datasets.md)",
                    flag_values=fv)
  flags.DEFINE_string('src', None, 'dataset root (manifest: the .jsonl file; stbir_demo: a '
                      '.jsonl file or a folder of them)', flag_values=fv)
  flags.DEFINE_string('root', None, 'stbir_demo: the folder its paths are relative to '
                      '(default: the current directory)', flag_values=fv)
  flags.DEFINE_string('out', '', 'data dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets)',
                      flag_values=fv)
  flags.DEFINE_integer('resolution', 224, 'side of the square photos and sketches, in pixels',
                       flag_values=fv)
  flags.DEFINE_string('captions', None, 'JSON or CSV: photo id -> sentence(s)', flag_values=fv)
  flags.DEFINE_string('split_file', None, 'test-split list (sketchy, fscoco)', flag_values=fv)
  flags.DEFINE_string('name', None, 'dataset name (default: the format)', flag_values=fv)
  flags.DEFINE_bool('overwrite', False, 'replace an existing prepared dataset', flag_values=fv)
  flags.DEFINE_bool('allow_missing', False, 'manifest: skip missing files (recorded in the '
                    'report) instead of failing', flag_values=fv)
  flags.DEFINE_bool('trust_pickle', False, 'qmul: unpickle the stroke-coordinate pickles fully '
                    '(they can run code); by default only numpy arrays and plain '
                    'lists/dicts/numbers/strings are read', flag_values=fv)
  flags.DEFINE_bool('allow_outside_root', False, "manifest: read paths outside the manifest's "
                    'folder (absolute or ../)', flag_values=fv)
  flags.DEFINE_enum('raster_mode', 'components', sketch_io.RASTER_MODES,
                    'strokes of raster-only sketches: connected components numbered '
                    'top-to-bottom, or the whole drawing as one stroke', flag_values=fv)
  flags.DEFINE_bool('quiet', False, 'no progress bar or printed report', flag_values=fv)
  flags.mark_flags_as_required(['format', 'src'], flag_values=fv)


def run(f: flags.FlagValues) -> int:
  prepare(f.format, f.src, f.out, resolution=f.resolution, captions=f.captions,
          split_file=f.split_file, name=f.name, overwrite=f.overwrite,
          allow_missing=f.allow_missing, raster_mode=f.raster_mode, root=f.root,
          trust_pickle=f.trust_pickle, allow_outside_root=f.allow_outside_root,
          progress=not f.quiet)
  return 0


def main(argv=None) -> int:
  """The program; `argv`: its flags as a list (cli.run_program), None: sys.argv."""
  # OSError: an existing dataset, a full disk.
  return cli.run_program(PROG, define_flags, run, argv, extra=(common.PrepareError, OSError))


if __name__ == '__main__':
  sys.exit(main())
