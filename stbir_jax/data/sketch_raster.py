"""Raster sketches -> stroke-order maps.

Raster sketches (PNG/JPG of any size, dark ink on light paper or the reverse, or ink on a
transparent background) have no stroke order: ink is found by thresholding half way between
the background (the median grey) and the extreme opposite grey, then split into strokes by
8-connected components ordered top-to-bottom (then left-to-right) by their first pixel
(`raster_mode='components'`), or kept as one stroke (`raster_mode='single'`). The ink is thinned
to its centre lines, which are redrawn like vector strokes (strokes.py: same line width, same
placement), so a raster sketch and its vector original give nearly the same map.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from stbir_jax.data.strokes import FITS, default_line_width, fit_scale

RASTER_MODES = ('components', 'single')


def ink_mask(image: Image.Image) -> np.ndarray:
  """Boolean ink mask of a raster sketch in either polarity (see module docstring)."""
  if image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info:
    alpha = image.getchannel('A') if image.mode == 'RGBA' else image.convert('RGBA').getchannel('A')
    low, high = alpha.getextrema()
    if low < 128 <= high:
      return np.asarray(alpha) >= 128
  grey = image.convert('L')
  # The median and extremes from the histogram, and integer thresholds: a few passes over the
  # uint8 pixels (no float copy, no sort), identical to thresholding the float greys.
  counts = np.cumsum(grey.histogram())
  pixels = int(counts[-1])
  bg = (_rank(counts, (pixels - 1) // 2) + _rank(counts, pixels // 2)) / 2
  far = _rank(counts, 0) if bg >= 128 else _rank(counts, pixels - 1)
  if abs(bg - far) < 24:  # blank page
    return np.zeros((grey.height, grey.width), bool)
  thr = (bg + far) / 2
  greys = np.asarray(grey)
  return greys < math.ceil(thr) if bg >= 128 else greys > math.floor(thr)


def _rank(cumulative_counts, rank: int) -> int:
  """The grey value of rank `rank` (0-based) among the pixels a cumulative histogram counts."""
  return int(np.searchsorted(cumulative_counts, rank, side='right'))


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
  """8-connected components; labels ordered top-to-bottom then left-to-right by first pixel."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  (a dependency of jax)
  labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
  if count:
    # Number them by their first pixel in row-major order (the one a scan meets first).
    values, first = np.unique(labels.ravel(), return_index=True)
    order = np.zeros(count + 1, np.int32)
    order[values[1:][np.argsort(first[1:], kind='stable')]] = np.arange(1, count + 1)
    labels = order[labels]
  return labels.astype(np.int32), int(count)


def _zhang_suen_tables() -> np.ndarray:
  """(2, 256) bool: whether Zhang-Suen's step 0 / step 1 removes a set pixel whose neighbours
  P2..P9 (north, then clockwise) are bits 0..7 of the index."""
  tables = np.zeros((2, 256), bool)
  for code in range(256):
    neighbours = [(code >> bit) & 1 for bit in range(8)]   # P2..P9
    set_count = sum(neighbours)
    transitions = sum(neighbours[bit] == 0 and neighbours[(bit + 1) % 8] == 1
                      for bit in range(8))   # 0 -> 1, going round
    p2, p4, p6, p8 = neighbours[0], neighbours[2], neighbours[4], neighbours[6]
    ok = 2 <= set_count <= 6 and transitions == 1
    tables[0, code] = ok and not (p2 and p4 and p6) and not (p4 and p6 and p8)
    tables[1, code] = ok and not (p2 and p4 and p8) and not (p2 and p6 and p8)
  return tables


_THIN_TABLES = _zhang_suen_tables()


def thin(mask: np.ndarray) -> np.ndarray:
  """Zhang-Suen thinning: a 1-pixel-wide skeleton of a boolean mask."""
  full = np.pad(mask.astype(np.uint8), 1)
  while True:
    changed = False
    # Only set pixels are removed: work on their bounding box plus a border of zeros (a view).
    rows, cols = np.nonzero(full.any(axis=1))[0], np.nonzero(full.any(axis=0))[0]
    if not len(rows):
      break
    img = full[rows[0] - 1:rows[-1] + 2, cols[0] - 1:cols[-1] + 2]
    for step in (0, 1):
      pixels = img[1:-1, 1:-1]
      neighbours = [img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:],    # P2 P3 P4 P5
                    img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]]  # P6 P7 P8 P9
      code = neighbours[0].copy()
      for bit in range(1, 8):
        code |= neighbours[bit] << bit
      remove = (pixels == 1) & _THIN_TABLES[step][code]  # one table look-up per pixel
      if remove.any():
        pixels[remove] = 0
        changed = True
    if not changed:
      break
  return full[1:-1, 1:-1].astype(bool)


def _source_mask(image: Image.Image, resolution: int) -> np.ndarray:
  """Ink mask resampled to about twice the output size (where thinning is cheap and its
  one-pixel bias is half an output pixel), keeping thin lines when shrinking."""
  mask = ink_mask(image)
  height, width = mask.shape
  factor = max(height, width) / (2 * resolution)
  size = (max(1, round(width / factor)), max(1, round(height / factor)))
  if factor <= 1:
    ink = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(ink.resize(size, Image.Resampling.NEAREST)) >= 128
  if factor < 2:
    ink = Image.fromarray(mask.astype(np.uint8) * 255)
  else:  # thicken first so 1-px lines survive the area filter
    bits = dilate_bits(np.packbits(mask, axis=1), int(factor) // 2)
    ink = Image.frombytes('1', (width, height), bits.tobytes()).convert('L')
  return np.asarray(ink.resize(size, Image.Resampling.BOX)) >= 96


def dilate_bits(bits: np.ndarray, radius: int) -> np.ndarray:
  """Square binary dilation of a mask packed 8 pixels a byte along rows (np.packbits(axis=1)):
  a pixel is set where any pixel within `radius` (Chebyshev) is.

  The same as PIL's MaxFilter(2 * radius + 1), whose cost grows with the window's area (55 s
  for a 4000 px sketch). Here the window grows by doubling: 4 * len(or_shifts(radius + 1))
  shifted ORs of the packed bytes (`_shifted`), so the work is about n / 2 * log2(radius) byte
  operations for n pixels.
  """
  for axis in (0, 1):
    for direction in (1, -1):  # a[i] covers i .. i + radius, then i - radius .. i + radius
      for shift in or_shifts(radius + 1):
        bits = bits | _shifted(bits, direction * shift, axis)
  return bits


def or_shifts(window: int) -> list[int]:
  """Shifts s_1, s_2, ... such that ORing a[i + s] into a[i] for each in turn makes a[i] cover
  a[i : i + window]: the span doubles each time, then the rest."""
  shifts, span = [], 1
  while 2 * span <= window:
    shifts.append(span)
    span *= 2
  return shifts + ([window - span] if window > span else [])


def _shifted(bits: np.ndarray, shift: int, axis: int) -> np.ndarray:
  """Packed rows (most significant bit first) moved so that pixel i takes pixel i + shift
  along `axis` (0: rows, 1: columns), with zeros from outside the image."""
  out = np.zeros_like(bits)
  if axis == 0:
    if abs(shift) >= len(bits):
      return out
    if shift >= 0:
      out[:len(bits) - shift] = bits[shift:]
    else:
      out[-shift:] = bits[:len(bits) + shift]
    return out
  byte_shift, bit_shift = divmod(abs(shift), 8)
  width = bits.shape[1]
  if byte_shift >= width:
    return out
  if shift >= 0:  # byte j takes bytes j + byte_shift and j + byte_shift + 1
    out[:, :width - byte_shift] = bits[:, byte_shift:] << bit_shift
    if bit_shift:
      out[:, :width - byte_shift - 1] |= bits[:, byte_shift + 1:] >> (8 - bit_shift)
  else:  # byte j takes bytes j - byte_shift and j - byte_shift - 1
    out[:, byte_shift:] = bits[:, :width - byte_shift] >> bit_shift
    if bit_shift:
      out[:, byte_shift + 1:] |= bits[:, :width - byte_shift - 1] << (8 - bit_shift)
  return out


def render_raster(image: Image.Image, resolution: int, *, raster_mode: str = 'components',
                  fit: str = 'ink', line_width: int | None = None) -> np.ndarray:
  """Raster sketch -> stroke-order map uint8 (R, R, 1).

  The ink is thinned (Zhang-Suen) to its centre lines, which are redrawn like vector strokes
  (same line width, same fit), so a raster sketch and its vector original give nearly the same
  map (within about one pixel) whatever pen width the raster used. Strokes are the
  8-connected components of the centre lines, numbered top-to-bottom (then left-to-right) by
  their first pixel.
  """
  if raster_mode not in RASTER_MODES:
    raise ValueError(f'raster_mode={raster_mode!r}; valid: {", ".join(RASTER_MODES)}')
  if fit not in FITS:
    raise ValueError(f'fit={fit!r}; valid: {", ".join(FITS)}')
  size = int(resolution)
  width = line_width or default_line_width(size)
  mask = _source_mask(image, size)
  skeleton = thin(mask)
  if not skeleton.any():
    return np.zeros((size, size, 1), np.uint8)
  if raster_mode == 'single':
    labels = skeleton.astype(np.int32)
  else:
    labels, _ = label_components(skeleton)
  if fit == 'canvas':
    mask_height, mask_width = mask.shape
    box = (0, 0, mask_width - 1, mask_height - 1)
  else:
    # The centre lines' extent: the ink's, less half a pen width (thinning shortens line ends,
    # so the skeleton's own box would be too small).
    ys, xs = np.nonzero(mask)
    half = max(0.0, (mask.sum() / skeleton.sum() - 1) / 2)
    box = (xs.min() + half, ys.min() + half, xs.max() - half, ys.max() - half)
  scale, centre = fit_scale(box, size, width)

  def to_out(y, x):
    return np.round((np.stack([x, y], axis=-1) - centre) * scale + (size - 1) / 2)

  out = Image.new('L', (size, size), 0)
  draw = ImageDraw.Draw(out)
  half_width = (width - 1) / 2
  ys, xs = np.nonzero(skeleton)
  values = np.minimum(labels[ys, xs], 255)
  pts = to_out(ys, xs)
  padded = np.pad(skeleton, 1)
  isolated = np.ones(len(ys), bool)
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      if dy or dx:
        isolated &= ~padded[1 + ys + dy, 1 + xs + dx]
  # Drawn by increasing stroke value (later strokes overwrite earlier ones). Primitives that
  # land on the same output pixels with the same value are drawn once (np.unique sorts by value
  # first): that changes nothing in the map, and bounds the drawing by the output size.
  dots = isolated | (width > 2)  # lone pixels, and round joints for wide lines
  for value, x, y in _unique_rows(np.column_stack([values[dots], pts[dots]])):
    draw.ellipse([x - half_width, y - half_width, x + half_width, y + half_width], fill=value)
  for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
    neighbour = padded[1 + dy:1 + dy + skeleton.shape[0], 1 + dx:1 + dx + skeleton.shape[1]]
    sy, sx = np.nonzero(skeleton & neighbour)
    if not len(sy):
      continue
    segment_values = np.minimum(labels[sy, sx], 255)
    segments = np.column_stack([segment_values, to_out(sy, sx), to_out(sy + dy, sx + dx)])
    for value, ax, ay, bx, by in _unique_rows(segments):
      draw.line([(ax, ay), (bx, by)], fill=value, width=width)
  return np.asarray(out, dtype=np.uint8)[..., None]


def _unique_rows(rows: np.ndarray) -> list[list[int]]:
  """Distinct rows of integers (a stroke value, then pixel coordinates), sorted: the same as
  np.unique(rows, axis=0), but each row is one int64 key, a far quicker sort."""
  rows = rows.astype(np.int64)
  if not len(rows):
    return []
  low = rows.min(axis=0)
  dims = tuple(rows.max(axis=0) - low + 1)
  keys = np.unique(np.ravel_multi_index(tuple((rows - low).T), dims))
  return (np.stack(np.unravel_index(keys, dims), axis=1) + low).tolist()
