"""Sketch input/output: SVG, stroke arrays and raster sketches -> stroke-order maps.

Every sketch ends up as a stroke-order map (see schema.py): uint8 (R, R, 1), 0 = background,
k = pixels drawn by the k-th stroke (later strokes overwrite earlier ones where they cross;
strokes past 255 are drawn with 255).

Vector sources keep their real stroke order:
  * SVG: <path> (M L H V C S Q T A Z, absolute and relative; A is approximated by a straight
    line to its end point), <polyline>, <polygon>, <line>; `transform` on any element,
    composed down the tree. Every subpath (each M/m) is one stroke, in document order. Other
    elements (<rect>, <circle>, <text>, ...) are ignored: sketch apps use <rect> for the
    background.
  * (N, 3) arrays of absolute (x, y, pen) or stroke-3 (dx, dy, pen) rows; pen != 0 means "pen
    lifted after this point" (sketch-rnn / QuickDraw / QMUL / FS-COCO convention).
  * stroke JSON (see `strokes_from_json`).

Raster sketches (PNG/JPG of any size, dark ink on light paper or the reverse, or ink on a
transparent background) have no stroke order: ink is found by thresholding half way between
the background (the median grey) and the extreme opposite grey, then split into strokes by
8-connected components ordered top-to-bottom (then left-to-right) by their first pixel
(`raster_mode='components'`), or kept as one stroke (`raster_mode='single'`).

Placement: by default (`fit='ink'`) the drawing's bounding box (stroke centre lines for
vectors, ink pixels for rasters) is scaled, aspect preserved, to fill the map less a margin of
`line_width` pixels, and centred. `fit='canvas'` uses the SVG canvas (viewBox, else
width/height) or the raster image size instead, keeping the sketch's position on its page.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stbir_jax import image_safety

RASTER_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')
VECTOR_EXTENSIONS = ('.svg', '.json', '.npy')
SKETCH_EXTENSIONS = VECTOR_EXTENSIONS + RASTER_EXTENSIONS
FITS = ('ink', 'canvas')
RASTER_MODES = ('components', 'single')
_CURVE_SEGMENTS = 16  # per Bézier; RDP after scaling removes the excess points


class SketchError(ValueError):
  """A sketch file or array that cannot be turned into strokes (the message names it)."""


def default_line_width(resolution: int) -> int:
  """Stroke width in pixels, odd so lines centre on pixels: 1 below 160 px, 3 up to 319, ..."""
  return 2 * int(resolution / 160) + 1


# ----------------------------------------------------------------------------- SVG

_NUMBER = r'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?'
_PATH_TOKEN = re.compile(rf'([MmLlHhVvCcSsQqTtAaZz])|({_NUMBER})')
_ARGS = dict(M=2, L=2, H=1, V=1, C=6, S=4, Q=4, T=2, A=7, Z=0)
_TRANSFORM = re.compile(r'\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)\s*,?')


def _numbers(text: str, what: str) -> list[float]:
  text = text.strip()
  tokens = re.findall(_NUMBER, text)
  leftover = re.sub(_NUMBER, '', text)
  if leftover.strip(' \t\r\n,'):
    raise SketchError(f'{what}: expected numbers, got {text[:60]!r}')
  return [float(t) for t in tokens]


def parse_transform(text: str | None) -> np.ndarray:
  """SVG `transform` attribute -> 3x3 affine matrix (functions applied right to left)."""
  m = np.eye(3)
  if not text or not text.strip():
    return m
  pos = 0
  text = text.strip()
  while pos < len(text):
    match = _TRANSFORM.match(text, pos)
    if not match:
      raise SketchError(f'transform {text!r}: cannot parse at {text[pos:pos + 20]!r}; expected '
                        'matrix/translate/scale/rotate/skewX/skewY(...)')
    pos = match.end()
    name = match.group(1)
    args = _numbers(match.group(2), f'transform {name}')
    t = np.eye(3)
    if name == 'matrix' and len(args) == 6:
      a, b, c, d, e, f = args
      t = np.array([[a, c, e], [b, d, f], [0, 0, 1.0]])
    elif name == 'translate' and len(args) in (1, 2):
      t[0, 2], t[1, 2] = args[0], (args[1] if len(args) == 2 else 0.0)
    elif name == 'scale' and len(args) in (1, 2):
      t[0, 0], t[1, 1] = args[0], (args[1] if len(args) == 2 else args[0])
    elif name == 'rotate' and len(args) in (1, 3):
      r = math.radians(args[0])
      t = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1.0]])
      if len(args) == 3:
        cx, cy = args[1:]
        t = _translate(cx, cy) @ t @ _translate(-cx, -cy)
    elif name == 'skewX' and len(args) == 1:
      t[0, 1] = math.tan(math.radians(args[0]))
    elif name == 'skewY' and len(args) == 1:
      t[1, 0] = math.tan(math.radians(args[0]))
    else:
      raise SketchError(f'transform {name}({match.group(2)}): wrong number of arguments')
    m = m @ t
  return m


def _translate(x, y):
  t = np.eye(3)
  t[0, 2], t[1, 2] = x, y
  return t


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
  return pts @ m[:2, :2].T + m[:2, 2]


def _cubic(p0, p1, p2, p3):
  t = np.linspace(0, 1, _CURVE_SEGMENTS + 1)[1:, None]
  return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + t ** 3 * p3


def _quadratic(p0, p1, p2):
  t = np.linspace(0, 1, _CURVE_SEGMENTS + 1)[1:, None]
  return ((1 - t) ** 2) * p0 + 2 * (1 - t) * t * p1 + t * t * p2


def path_to_strokes(d: str) -> list[np.ndarray]:
  """SVG path data -> one (N, 2) float array per subpath, in user coordinates."""
  tokens = []
  pos = 0
  for match in _PATH_TOKEN.finditer(d):
    gap = d[pos:match.start()]
    if gap.strip(' \t\r\n,'):
      raise SketchError(f'path data: unexpected {gap.strip()[:20]!r} at character {pos}')
    pos = match.end()
    tokens.append(match.group(1) or float(match.group(2)))
  if d[pos:].strip(' \t\r\n,'):
    raise SketchError(f'path data: unexpected {d[pos:].strip()[:20]!r} at character {pos}')
  if not tokens:
    return []
  if tokens[0] not in ('M', 'm'):
    raise SketchError(f'path data must start with M or m, got {tokens[0]!r}')

  strokes, pts = [], None
  cur = np.zeros(2)
  start = np.zeros(2)
  prev_cmd, prev_ctrl = None, None
  i, cmd = 0, None

  def flush():
    nonlocal pts
    if pts is not None and len(pts) > 0:
      strokes.append(np.array(pts, dtype=np.float64))
    pts = None

  def add(points):
    pts.extend(np.atleast_2d(points))

  while i < len(tokens):
    if isinstance(tokens[i], str):
      cmd = tokens[i]
      i += 1
    elif cmd is None or cmd in 'Zz':
      raise SketchError(f'path data: number {tokens[i]} without a command')
    upper, rel = cmd.upper(), cmd.islower()
    n = _ARGS[upper]
    args = tokens[i:i + n]
    if len(args) < n or any(isinstance(a, str) for a in args):
      raise SketchError(f'path data: command {cmd} needs {n} numbers, got {args}')
    i += n
    base = cur if rel else np.zeros(2)
    ctrl = None
    if pts is None and upper not in 'MZ':  # drawing after Z starts a new stroke at the start
      pts = [cur.copy()]
    if upper == 'M':
      flush()
      cur = base + args
      start = cur.copy()
      pts = [cur.copy()]
      cmd = 'l' if rel else 'L'  # extra coordinate pairs after M are implicit lines
    elif upper == 'L':
      cur = base + args
      add(cur)
    elif upper == 'H':
      cur = np.array([(cur[0] if rel else 0.0) + args[0], cur[1]])
      add(cur)
    elif upper == 'V':
      cur = np.array([cur[0], (cur[1] if rel else 0.0) + args[0]])
      add(cur)
    elif upper in 'CS':
      if upper == 'C':
        c1, c2, end = base + args[0:2], base + args[2:4], base + args[4:6]
      else:
        c1 = 2 * cur - prev_ctrl if prev_cmd in ('C', 'S') else cur.copy()
        c2, end = base + args[0:2], base + args[2:4]
      add(_cubic(cur, c1, c2, end))
      cur, ctrl = end, c2
    elif upper in 'QT':
      if upper == 'Q':
        c1, end = base + args[0:2], base + args[2:4]
      else:
        c1 = 2 * cur - prev_ctrl if prev_cmd in ('Q', 'T') else cur.copy()
        end = base + args[0:2]
      add(_quadratic(cur, c1, end))
      cur, ctrl = end, c1
    elif upper == 'A':
      cur = base + args[5:7]  # arcs are rare in sketches: straight line to the end point
      add(cur)
    elif upper == 'Z':
      if pts is not None:
        pts.append(start.copy())
      flush()
      cur = start.copy()
    prev_cmd, prev_ctrl = upper, ctrl
  flush()
  return strokes


def _svg_length(value):
  if value is None:
    return None
  m = re.match(rf'\s*({_NUMBER})\s*(px)?\s*$', value)
  return float(m.group(1)) if m else None


def _tag(el):
  return el.tag.rsplit('}', 1)[-1] if isinstance(el.tag, str) else ''


def _hidden(el):
  style = (el.get('style') or '').replace(' ', '')
  return el.get('display') == 'none' or 'display:none' in style


def parse_svg(source, *, name: str | None = None):
  """SVG text, bytes or file -> (strokes, canvas).

  strokes: list of (N, 2) float arrays in document order, transforms applied.
  canvas: (x0, y0, x1, y1) from the root viewBox, else width/height, else None.
  """
  name = name or (str(source) if isinstance(source, Path) else '<svg>')
  if isinstance(source, Path):
    try:
      source = source.read_bytes()
    except OSError as e:
      raise SketchError(f'{name}: cannot read SVG file: {e}') from e
  try:
    root = ET.fromstring(source)
  except ET.ParseError as e:
    raise SketchError(f'{name}: malformed SVG (not well-formed XML): {e}') from e
  if _tag(root) != 'svg':
    raise SketchError(f'{name}: expected an <svg> root element, got <{_tag(root)}>')

  canvas = None
  view_box = root.get('viewBox')
  if view_box:
    vb = _numbers(view_box, f'{name}: viewBox')
    if len(vb) == 4 and vb[2] > 0 and vb[3] > 0:
      canvas = (vb[0], vb[1], vb[0] + vb[2], vb[1] + vb[3])
  if canvas is None:
    w, h = _svg_length(root.get('width')), _svg_length(root.get('height'))
    if w and h:
      canvas = (0.0, 0.0, w, h)

  strokes = []

  def walk(el, m):
    if _hidden(el):
      return
    try:
      m = m @ parse_transform(el.get('transform'))
      tag = _tag(el)
      local = []
      if tag == 'path':
        local = path_to_strokes(el.get('d') or '')
      elif tag in ('polyline', 'polygon'):
        nums = _numbers(el.get('points') or '', f'<{tag}> points')
        if len(nums) % 2:
          raise SketchError(f'<{tag}> points: odd number of coordinates ({len(nums)})')
        pts = np.array(nums, dtype=np.float64).reshape(-1, 2)
        if tag == 'polygon' and len(pts):
          pts = np.concatenate([pts, pts[:1]])
        local = [pts] if len(pts) else []
      elif tag == 'line':
        vals = [_numbers(el.get(k) or '0', f'<line> {k}') for k in ('x1', 'y1', 'x2', 'y2')]
        if any(len(v) != 1 for v in vals):
          raise SketchError('<line>: x1, y1, x2, y2 must be single numbers')
        local = [np.array([[vals[0][0], vals[1][0]], [vals[2][0], vals[3][0]]])]
    except SketchError as e:
      raise SketchError(f'{name}: {e}') from None
    strokes.extend(_apply(m, s) for s in local)
    for child in el:
      walk(child, m)

  walk(root, np.eye(3))
  return strokes, canvas


# ----------------------------------------------------------------------------- arrays, JSON


def strokes_from_array(array, *, relative: bool = False, name: str = 'stroke array'):
  """(N, >=3) rows of (x, y, pen) -> strokes; `relative` for stroke-3 (dx, dy, pen).

  pen != 0 ends the stroke after that row. Rows must be finite numbers.
  """
  try:
    a = np.asarray(array, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise SketchError(f'{name}: expected an (N, 3) numeric array of (x, y, pen): {e}') from None
  if a.ndim != 2 or a.shape[1] < 3:
    raise SketchError(f'{name}: expected an (N, 3) array of (x, y, pen) rows, got shape {a.shape}')
  if not np.all(np.isfinite(a[:, :3])):
    raise SketchError(f'{name}: contains NaN or infinite values')
  xy = np.cumsum(a[:, :2], axis=0) if relative else a[:, :2]
  ends = np.nonzero(a[:, 2] != 0)[0] + 1
  return [s for s in np.split(xy, ends) if len(s)]


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
        return [np.stack([np.asarray(s[0], float), np.asarray(s[1], float)], axis=1)
                for s in obj['drawing'] if len(s[0])]
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
  for k, s in enumerate(strokes):
    a = np.asarray(s, dtype=np.float64)
    if a.size == 0:
      continue
    if a.ndim != 2 or a.shape[1] < 2:
      raise SketchError(f'{name}: stroke {k} must be a list of [x, y] points, got shape {a.shape}')
    out.append(a[:, :2])
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
    i, j = stack.pop()
    if j <= i + 1:
      continue
    seg = pts[j] - pts[i]
    rel = pts[i + 1:j] - pts[i]
    norm = np.hypot(*seg)
    if norm == 0:
      dist = np.hypot(rel[:, 0], rel[:, 1])
    else:
      dist = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / norm
    k = int(np.argmax(dist))
    if dist[k] > epsilon:
      keep[i + 1 + k] = True
      stack += [(i, i + 1 + k), (i + 1 + k, j)]
  return pts[keep]


# ----------------------------------------------------------------------------- rendering


def _fit(box, resolution, margin):
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
  r = int(resolution)
  lw = line_width or default_line_width(r)
  strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
  strokes = [s for s in strokes if len(s)]
  out = Image.new('L', (r, r), 0)
  if not strokes:
    return np.zeros((r, r, 1), np.uint8)
  if fit == 'canvas' and canvas is not None:
    box = canvas
  else:
    allp = np.concatenate(strokes)
    box = (*allp.min(0), *allp.max(0))
  scale, centre = _fit(box, r, lw)
  draw = ImageDraw.Draw(out)
  for k, s in enumerate(strokes, start=1):
    p = (s - centre) * scale + (r - 1) / 2
    # Whole pixels: PIL rounds float coordinates differently in line() and ellipse().
    p = np.round(rdp(p, epsilon))
    value = min(k, 255)
    if len(p) == 1 or np.allclose(p, p[0]):
      x, y = p[0]
      h = (lw - 1) / 2
      draw.ellipse([x - h, y - h, x + h, y + h], fill=value)
    else:
      draw.line([tuple(q) for q in p], fill=value, width=lw, joint='curve' if lw > 2 else None)
  return np.asarray(out, dtype=np.uint8)[..., None]


# ----------------------------------------------------------------------------- raster sketches


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
  n = int(counts[-1])
  bg = (_rank(counts, (n - 1) // 2) + _rank(counts, n // 2)) / 2
  far = _rank(counts, 0) if bg >= 128 else _rank(counts, n - 1)
  if abs(bg - far) < 24:  # blank page
    return np.zeros((grey.height, grey.width), bool)
  thr = (bg + far) / 2
  g = np.asarray(grey)
  return g < math.ceil(thr) if bg >= 128 else g > math.floor(thr)


def _rank(cumulative_counts, r: int) -> int:
  """The grey value of rank r (0-based) among the pixels counted by a cumulative histogram."""
  return int(np.searchsorted(cumulative_counts, r, side='right'))


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
  """8-connected components; labels ordered top-to-bottom then left-to-right by first pixel."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  (a dependency of jax)
  labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
  if n:
    # Number them by their first pixel in row-major order (the one a scan meets first).
    values, first = np.unique(labels.ravel(), return_index=True)
    order = np.zeros(n + 1, np.int32)
    order[values[1:][np.argsort(first[1:], kind='stable')]] = np.arange(1, n + 1)
    labels = order[labels]
  return labels.astype(np.int32), int(n)


def _zhang_suen_tables() -> np.ndarray:
  """(2, 256) bool: whether Zhang-Suen's step 0 / step 1 removes a set pixel whose neighbours
  P2..P9 (north, then clockwise) are bits 0..7 of the index."""
  tables = np.zeros((2, 256), bool)
  for code in range(256):
    p = [(code >> i) & 1 for i in range(8)]
    b = sum(p)  # set neighbours
    a = sum(p[i] == 0 and p[(i + 1) % 8] == 1 for i in range(8))  # 0 -> 1 transitions
    p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
    ok = 2 <= b <= 6 and a == 1
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
      c = img[1:-1, 1:-1]
      n = [img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:],    # P2 P3 P4 P5
           img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]]  # P6 P7 P8 P9
      code = n[0].copy()
      for i in range(1, 8):
        code |= n[i] << i
      remove = (c == 1) & _THIN_TABLES[step][code]  # one table look-up per pixel
      if remove.any():
        c[remove] = 0
        changed = True
    if not changed:
      break
  return full[1:-1, 1:-1].astype(bool)


def _source_mask(image: Image.Image, resolution: int) -> np.ndarray:
  """Ink mask resampled to about twice the output size (where thinning is cheap and its
  one-pixel bias is half an output pixel), keeping thin lines when shrinking."""
  mask = ink_mask(image)
  h, w = mask.shape
  factor = max(h, w) / (2 * resolution)
  size = (max(1, round(w / factor)), max(1, round(h / factor)))
  if factor <= 1:
    ink = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(ink.resize(size, Image.Resampling.NEAREST)) >= 128
  if factor < 2:
    ink = Image.fromarray(mask.astype(np.uint8) * 255)
  else:  # thicken first so 1-px lines survive the area filter
    bits = dilate_bits(np.packbits(mask, axis=1), int(factor) // 2)
    ink = Image.frombytes('1', (w, h), bits.tobytes()).convert('L')
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
  q, b = divmod(abs(shift), 8)
  n = bits.shape[1]
  if q >= n:
    return out
  if shift >= 0:  # byte j takes bytes j + q and j + q + 1
    out[:, :n - q] = bits[:, q:] << b
    if b:
      out[:, :n - q - 1] |= bits[:, q + 1:] >> (8 - b)
  else:  # byte j takes bytes j - q and j - q - 1
    out[:, q:] = bits[:, :n - q] >> b
    if b:
      out[:, q + 1:] |= bits[:, :n - q - 1] << (8 - b)
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
  r = int(resolution)
  lw = line_width or default_line_width(r)
  mask = _source_mask(image, r)
  skeleton = thin(mask)
  if not skeleton.any():
    return np.zeros((r, r, 1), np.uint8)
  if raster_mode == 'single':
    labels = skeleton.astype(np.int32)
  else:
    labels, _ = label_components(skeleton)
  if fit == 'canvas':
    hh, ww = mask.shape
    box = (0, 0, ww - 1, hh - 1)
  else:
    # The centre lines' extent: the ink's, less half a pen width (thinning shortens line ends,
    # so the skeleton's own box would be too small).
    ys, xs = np.nonzero(mask)
    half = max(0.0, (mask.sum() / skeleton.sum() - 1) / 2)
    box = (xs.min() + half, ys.min() + half, xs.max() - half, ys.max() - half)
  scale, centre = _fit(box, r, lw)

  def to_out(y, x):
    return np.round((np.stack([x, y], axis=-1) - centre) * scale + (r - 1) / 2)

  out = Image.new('L', (r, r), 0)
  draw = ImageDraw.Draw(out)
  h = (lw - 1) / 2
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
  dots = isolated | (lw > 2)  # lone pixels, and round joints for wide lines
  for v, x, y in _unique_rows(np.column_stack([values[dots], pts[dots]])):
    draw.ellipse([x - h, y - h, x + h, y + h], fill=v)
  for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
    nb = padded[1 + dy:1 + dy + skeleton.shape[0], 1 + dx:1 + dx + skeleton.shape[1]]
    sy, sx = np.nonzero(skeleton & nb)
    if not len(sy):
      continue
    v = np.minimum(labels[sy, sx], 255)
    segments = np.column_stack([v, to_out(sy, sx), to_out(sy + dy, sx + dx)])
    for v, ax, ay, bx, by in _unique_rows(segments):
      draw.line([(ax, ay), (bx, by)], fill=v, width=lw)
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


# ----------------------------------------------------------------------------- files


def load_strokes(path) -> tuple[list[np.ndarray], tuple | None]:
  """A vector sketch file (.svg, .json, .npy) -> (strokes, canvas or None)."""
  path = Path(path)
  ext = path.suffix.lower()
  if ext == '.svg':
    return parse_svg(path, name=str(path))
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
      return render_raster(image, resolution, raster_mode=raster_mode, fit=fit,
                           line_width=line_width)
  raise SketchError(f'{path}: unknown sketch file type {ext!r}; expected one of '
                    f'{", ".join(SKETCH_EXTENSIONS)}')
