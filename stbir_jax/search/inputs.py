"""What a search is given, checked: gallery photos, the user's sketch and text, the number of
results. Every refusal is a SearchError whose message names the input and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stbir_jax import image_safety
from stbir_jax.data import sketch_io, sketch_raster

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff')
FIT_HELP = ('ink: scale the drawing to fill the frame; canvas: keep its place on the page (a '
            'sketch drawn in the photo\'s frame, for layout-keeping models such as the demo\'s)')


class SearchError(ValueError):
  """A bad index, model, query or file; the message names it and what was expected."""


def load_gallery_image(path, resolution: int) -> np.ndarray:
  """A photo file -> uint8 (R, R, 3), resized like the prepared datasets. Raises SearchError."""
  # Imported here: prepare imports TFDS (seconds), which a query-only program never needs.
  from stbir_jax.data import prepare  # pylint: disable=g-import-not-at-top
  try:
    with image_safety.open_image(path):  # larger images are refused, not decoded
      pass
    return prepare.load_photo(path, resolution)
  except image_safety.ImageError as e:
    raise SearchError(str(e)) from None
  except Exception as e:  # noqa: BLE001  pylint: disable=broad-except
    # PIL raises many types (OSError, DecompressionBombError, ValueError, SyntaxError...).
    raise SearchError(f'{path}: not a readable image: {type(e).__name__}: {e}') from None


def check_text(text: str, name: str = 'text') -> str:
  """`text` if it can be encoded as UTF-8 (the tokenizer's input), else a SearchError naming
  `name`: a command-line argument in another encoding reaches Python as lone surrogates."""
  if not isinstance(text, str):
    raise SearchError(f'{name}: expected a str, got {type(text).__name__}')
  try:
    text.encode('utf-8')
  except UnicodeEncodeError as e:
    bad = text[e.start]
    what = (f'byte 0x{ord(bad) - 0xDC00:02x}' if 0xDC80 <= ord(bad) <= 0xDCFF else
            f'character U+{ord(bad):04X}')
    raise SearchError(f'{name}: not valid UTF-8 ({what} at position {e.start}); give the '
                      'description in UTF-8 (e.g. set a UTF-8 locale, LANG=C.UTF-8)') from None
  return text


def check_k(k, name: str = 'k') -> int:
  """The number of results: a whole number >= 1, else a SearchError naming `name`."""
  if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
    raise SearchError(f'{name}={k!r}: the number of results must be a whole number >= 1')
  return int(k)


def check_fit(fit: str) -> str:
  if fit not in sketch_io.FITS:
    raise SearchError(f'--fit {fit!r}; valid: {", ".join(sketch_io.FITS)}')
  return fit


def sketch_map(sketch, resolution: int, fit: str = 'ink') -> np.ndarray:
  """A user's sketch -> uint8 (R, R) stroke-order map.

  `sketch`: a file path (PNG/JPG/... raster of any size, dark on light or the reverse or ink on
  transparent, anti-aliased; or SVG / stroke JSON / .npy strokes), a PIL image, or an (R, R)
  / (R, R, 1) stroke map already at the model's resolution. `fit`: 'ink' scales the drawing to
  fill the frame; 'canvas' keeps where it is on its page, for a sketch drawn in the photo's frame
  and a model whose embedding keeps the layout (pool='flatten', e.g. configs/base.py:demo).
  """
  check_fit(fit)
  if isinstance(sketch, Image.Image):
    try:
      image_safety.check_pixels(sketch, 'sketch', image_safety.MAX_SKETCH_PIXELS)
    except image_safety.ImageError as e:
      raise SearchError(str(e)) from None
    return sketch_raster.render_raster(sketch, resolution, fit=fit)[..., 0]
  if isinstance(sketch, np.ndarray):
    m = sketch[..., 0] if sketch.ndim == 3 and sketch.shape[-1] == 1 else sketch
    if m.shape != (resolution, resolution) or m.dtype != np.uint8:
      raise SearchError(f'sketch array: expected a uint8 ({resolution}, {resolution}) stroke '
                        f'map, got {m.dtype} {m.shape}; pass a file or a PIL image instead')
    return m
  path = Path(sketch)
  if not path.is_file():
    raise SearchError(f'--sketch {path}: no such file')
  try:  # a raster's size is checked from its header, before it is decoded
    return sketch_io.load_sketch(path, resolution, fit=fit)[..., 0]
  except sketch_io.SketchError as e:
    raise SearchError(str(e)) from None
