"""Strokes and the stroke-order map they render to.

A stroke is an (N, 2) float array of points; a sketch is a list of strokes in drawing order.
This module reads strokes from arrays and stroke JSON, simplifies them (`rdp`) and draws them
(`render_strokes`) into a stroke-order map (see schema.py): uint8 (R, R, 1), 0 = background,
k = pixels drawn by the k-th stroke (later strokes overwrite earlier ones where they cross;
strokes past 255 are drawn with 255). It also owns what every sketch reader shares: SketchError,
the placements (FITS) and the line width.

  * (N, 3) arrays of absolute (x, y, pen) or stroke-3 (dx, dy, pen) rows; pen != 0 means "pen
    lifted after this point" (sketch-rnn / QuickDraw / QMUL / FS-COCO convention).
  * stroke JSON (see `strokes_from_json`).

Placement: by default (`fit='ink'`) the drawing's bounding box (stroke centre lines for
vectors, ink pixels for rasters) is scaled, aspect preserved, to fill the map less a margin of
`line_width` pixels, and centred. `fit='canvas'` uses the SVG canvas (viewBox, else
width/height) or the raster image size instead, keeping the sketch's position on its page.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

FITS = ('ink', 'canvas')


class SketchError(ValueError):
  """A sketch file or array that cannot be turned into strokes (the message names it)."""


def default_line_width(resolution: int) -> int:
  """Stroke width in pixels, odd so lines centre on pixels: 1 below 160 px, 3 up to 319, ..."""
  return 2 * int(resolution / 160) + 1


# ----------------------------------------------------------------------------- arrays, JSON


def strokes_from_array(array, *, relative: bool = False, name: str = 'stroke array'):
  """(N, >=3) rows of (x, y, pen) -> strokes; `relative` for stroke-3 (dx, dy, pen).

  pen != 0 ends the stroke after that row. Rows must be finite numbers.
  """
  try:
    rows = np.asarray(array, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise SketchError(f'{name}: expected an (N, 3) numeric array of (x, y, pen): {e}') from None
  if rows.ndim != 2 or rows.shape[1] < 3:
    raise SketchError(f'{name}: expected an (N, 3) array of (x, y, pen) rows, got shape '
                      f'{rows.shape}')
  if not np.all(np.isfinite(rows[:, :3])):
    raise SketchError(f'{name}: contains NaN or infinite values')
  xy = np.cumsum(rows[:, :2], axis=0) if relative else rows[:, :2]
  ends = np.nonzero(rows[:, 2] != 0)[0] + 1
  return [stroke for stroke in np.split(xy, ends) if len(stroke)]


def strokes_from_json(obj, *, name: str = 'stroke JSON'):
  """Stroke JSON -> strokes. Accepted forms:

    [[[x, y], [x, y], ...], ...]            a list of strokes, each a list of points
    {"strokes": <the list above>}
    {"drawing": [[[x...], [y...]], ...]}    QuickDraw simplified format (per stroke xs, ys)
    {"points": [[x, y, pen], ...]}          absolute (x, y, pen) rows
    {"stroke3": [[dx, dy, pen], ...]}       stroke-3 rows
  """
  try:
    if isinstance(obj, dict):
      if 'strokes' in obj:
        return _point_lists(obj['strokes'], name)
      if 'drawing' in obj:
        return [np.stack([np.asarray(stroke[0], float), np.asarray(stroke[1], float)], axis=1)
                for stroke in obj['drawing'] if len(stroke[0])]
      if 'points' in obj:
        return strokes_from_array(obj['points'], name=name)
      if 'stroke3' in obj:
        return strokes_from_array(obj['stroke3'], relative=True, name=name)
      raise SketchError(f'{name}: object has none of the keys strokes, drawing, points, stroke3 '
                        f'(got {sorted(obj)})')
    if isinstance(obj, list):
      return _point_lists(obj, name)
  except SketchError:
    raise
  except (TypeError, ValueError, IndexError, KeyError) as e:
    raise SketchError(f'{name}: malformed stroke JSON: {e}') from None
  raise SketchError(f'{name}: expected a list of strokes or an object, got {type(obj).__name__}')


def _point_lists(strokes, name):
  out = []
  for number, stroke in enumerate(strokes):
    points = np.asarray(stroke, dtype=np.float64)
    if points.size == 0:
      continue
    if points.ndim != 2 or points.shape[1] < 2:
      raise SketchError(f'{name}: stroke {number} must be a list of [x, y] points, got shape '
                        f'{points.shape}')
    out.append(points[:, :2])
  return out


# ----------------------------------------------------------------------------- simplification


def rdp(points, epsilon: float) -> np.ndarray:
  """Ramer-Douglas-Peucker: drop points closer than `epsilon` to the simplified polyline."""
  pts = np.asarray(points, dtype=np.float64)
  if len(pts) < 3 or epsilon <= 0:
    return pts
  keep = np.zeros(len(pts), dtype=bool)
  keep[0] = keep[-1] = True
  stack = [(0, len(pts) - 1)]
  while stack:
    first, last = stack.pop()
    if last <= first + 1:
      continue
    seg = pts[last] - pts[first]
    rel = pts[first + 1:last] - pts[first]
    norm = np.hypot(*seg)
    if norm == 0:
      dist = np.hypot(rel[:, 0], rel[:, 1])
    else:
      dist = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / norm
    farthest = first + 1 + int(np.argmax(dist))
    if dist[farthest - first - 1] > epsilon:
      keep[farthest] = True
      stack += [(first, farthest), (farthest, last)]
  return pts[keep]


# ----------------------------------------------------------------------------- rendering


def fit_scale(box, resolution, margin):
  """(scale, centre) that map the (x0, y0, x1, y1) box, aspect kept and centred, onto the map
  less `margin` pixels a side: map = (point - centre) * scale + (resolution - 1) / 2."""
  x0, y0, x1, y1 = box
  size = max(x1 - x0, y1 - y0)
  inner = max(resolution - 1 - 2 * margin, 1)
  scale = inner / size if size > 0 else 1.0
  centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
  return scale, centre


def render_strokes(strokes, resolution: int, *, line_width: int | None = None,
                   fit: str = 'ink', canvas=None, epsilon: float = 0.5) -> np.ndarray:
  """Strokes -> stroke-order map uint8 (R, R, 1); stroke k (1-based) drawn with min(k, 255).

  `epsilon`: RDP tolerance in output pixels (0 = no simplification).
  """
  if fit not in FITS:
    raise ValueError(f'fit={fit!r}; valid: {", ".join(FITS)}')
  size = int(resolution)
  width = line_width or default_line_width(size)
  strokes = [np.asarray(stroke, dtype=np.float64).reshape(-1, 2) for stroke in strokes]
  strokes = [stroke for stroke in strokes if len(stroke)]
  out = Image.new('L', (size, size), 0)
  if not strokes:
    return np.zeros((size, size, 1), np.uint8)
  if fit == 'canvas' and canvas is not None:
    box = canvas
  else:
    every_point = np.concatenate(strokes)
    box = (*every_point.min(0), *every_point.max(0))
  scale, centre = fit_scale(box, size, width)
  draw = ImageDraw.Draw(out)
  for number, stroke in enumerate(strokes, start=1):
    points = (stroke - centre) * scale + (size - 1) / 2
    # Whole pixels: PIL rounds float coordinates differently in line() and ellipse().
    points = np.round(rdp(points, epsilon))
    value = min(number, 255)
    if len(points) == 1 or np.allclose(points, points[0]):
      x, y = points[0]
      half = (width - 1) / 2
      draw.ellipse([x - half, y - half, x + half, y + half], fill=value)
    else:
      draw.line([tuple(point) for point in points], fill=value, width=width,
                joint='curve' if width > 2 else None)
  return np.asarray(out, dtype=np.uint8)[..., None]
