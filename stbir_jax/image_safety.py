"""Opening untrusted images: the size is checked from the header before anything is decoded.

`Image.open` reads only the header; the pixels are decoded by `load()`. A small file can claim
a huge size (a 99 KB PNG that decodes to 8000x8000, a 30000x30000 decompression bomb), so every
image that comes from a user or a downloaded dataset is opened with `open_image`, which refuses
more than a pixel limit with an `ImageTooLargeError` naming the file, its size and the limit,
and turns PIL's many failure types into one `UnreadableImageError`. Both are ValueErrors, so
callers that list bad files (prepare, search index) or print one line (search query, the demo)
catch them with their own errors.
"""

from __future__ import annotations

import re
import struct

from PIL import Image

# Photos: the gallery and prepared datasets (PIL itself warns above 89 MP and fails above 179).
MAX_IMAGE_PIXELS = 80_000_000
# Sketches are rendered from every pixel (stbir_jax/data/sketch_raster.py): this bound keeps one
# render of any accepted file within about 2 s on 2 cores (docs/usage.md, "Hostile inputs").
MAX_SKETCH_PIXELS = 40_000_000


class ImageError(ValueError):
  """An image that is not opened; the message names the file."""


class ImageTooLargeError(ImageError):
  """More pixels than the limit, as read from the header (nothing was decoded)."""


class UnreadableImageError(ImageError):
  """Not an image, truncated, or in a format PIL cannot read."""


def too_large_message(name, width, height, limit: int) -> str:
  return (f'{name}: {width}x{height} pixels is too large: the limit is {limit:,} pixels '
          '(a decompression bomb, or a mistake: downscale it)')


def check_pixels(image: Image.Image, name, limit: int = MAX_IMAGE_PIXELS) -> None:
  """Raises ImageTooLargeError if the (opened, maybe not decoded) image exceeds `limit`."""
  if image.width * image.height > limit:
    raise ImageTooLargeError(too_large_message(name, image.width, image.height, limit))


def open_image(source, *, name=None, limit: int = MAX_IMAGE_PIXELS) -> Image.Image:
  """Opens `source` (a path or a binary file) lazily and checks its size from the header.

  -> the opened, not yet decoded, image (use it as a context manager). Decoding it later may
  still fail on a damaged file: callers catch `decode_errors()` around `load()` too.
  """
  name = name if name is not None else source
  try:
    image = Image.open(source)
  except Image.DecompressionBombError as e:
    # PIL refuses more than twice its own limit before we see the size; say ours instead.
    pixels = re.search(r'\((\d+) pixels\)', str(e))
    size = f'{int(pixels.group(1)):,} pixels' if pixels else 'its size'
    raise ImageTooLargeError(f'{name}: {size} is too large: the limit is {limit:,} pixels (a '
                             'decompression bomb, or a mistake: downscale it)') from None
  except decode_errors() as e:
    raise UnreadableImageError(f'{name}: not a readable image: {type(e).__name__}: {e}') from None
  try:
    check_pixels(image, name, limit)
  except ImageTooLargeError:
    image.close()
    raise
  return image


def decode_errors() -> tuple[type[BaseException], ...]:
  """What PIL raises for a damaged or unsupported file (open or load)."""
  # OSError: truncated data, unknown format (UnidentifiedImageError); SyntaxError and
  # ValueError: malformed headers in some plugins; struct.error, EOFError, IndexError:
  # hand-crafted chunks; DecompressionBombError: a frame larger than the header said.
  return (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
          Image.DecompressionBombError)
