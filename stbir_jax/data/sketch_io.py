"""Sketch files -> stroke-order maps: the package's one door to sketches.

Every sketch ends up as a stroke-order map (see schema.py): uint8 (R, R, 1), 0 = background,
k = pixels drawn by the k-th stroke (later strokes overwrite earlier ones where they cross;
strokes past 255 are drawn with 255). `load_sketch` reads any sketch file:

  * vector sources keep their real stroke order: SVG (sketch_svg.py), (N, 3) stroke arrays in
    .npy files and stroke JSON (strokes.py), drawn by strokes.render_strokes;
  * raster sketches (PNG/JPG/..., either polarity, or ink on a transparent background) have no
    stroke order: their ink is split into strokes by sketch_raster.render_raster.

Placement (`fit`, strokes.py): 'ink' scales the drawing's bounding box to fill the map, 'canvas'
keeps its position on the SVG canvas or raster page.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stbir_jax import image_safety
from stbir_jax.data import sketch_raster, sketch_svg

# The sketch vocabulary the dataset formats, prepare, the search and the demo import from here
# (SketchError, FITS, RASTER_MODES, strokes_from_array, render_strokes): defined in strokes.py
# and sketch_raster.py, this module is the package's one door to sketches.
from stbir_jax.data.sketch_raster import RASTER_MODES  # noqa: F401
from stbir_jax.data.strokes import (  # noqa: F401
    FITS,
    SketchError,
    render_strokes,
    strokes_from_array,
    strokes_from_json,
)

RASTER_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')
VECTOR_EXTENSIONS = ('.svg', '.json', '.npy')
SKETCH_EXTENSIONS = VECTOR_EXTENSIONS + RASTER_EXTENSIONS


def load_strokes(path) -> tuple[list[np.ndarray], tuple | None]:
  """A vector sketch file (.svg, .json, .npy) -> (strokes, canvas or None)."""
  path = Path(path)
  ext = path.suffix.lower()
  if ext == '.svg':
    return sketch_svg.parse_svg(path, name=str(path))
  if ext == '.json':
    try:
      obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
      raise SketchError(f'{path}: cannot read stroke JSON: {e}') from None
    return strokes_from_json(obj, name=str(path)), None
  if ext == '.npy':
    try:
      array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise SketchError(f'{path}: cannot read .npy stroke array: {e}') from None
    return strokes_from_array(array, name=str(path)), None
  raise SketchError(f'{path}: not a vector sketch; expected one of {", ".join(VECTOR_EXTENSIONS)}')


def load_sketch(path, resolution: int, *, raster_mode: str = 'components', fit: str = 'ink',
                line_width: int | None = None) -> np.ndarray:
  """Any sketch file -> stroke-order map uint8 (R, R, 1). Raises SketchError naming the file."""
  path = Path(path)
  ext = path.suffix.lower()
  if ext in VECTOR_EXTENSIONS:
    strokes, canvas = load_strokes(path)
    return render_strokes(strokes, resolution, line_width=line_width, fit=fit, canvas=canvas)
  if ext in RASTER_EXTENSIONS:
    try:  # the size is checked from the header first: rendering reads every pixel
      image = image_safety.open_image(path, limit=image_safety.MAX_SKETCH_PIXELS)
    except image_safety.ImageError as e:
      raise SketchError(str(e)) from None
    with image:
      try:
        image.load()
      except image_safety.decode_errors() as e:
        raise SketchError(f'{path}: unreadable image: {type(e).__name__}: {e}') from None
      return sketch_raster.render_raster(image, resolution, raster_mode=raster_mode, fit=fit,
                           line_width=line_width)
  raise SketchError(f'{path}: unknown sketch file type {ext!r}; expected one of '
                    f'{", ".join(SKETCH_EXTENSIONS)}')
