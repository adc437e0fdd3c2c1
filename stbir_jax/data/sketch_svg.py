"""SVG sketches -> strokes, in their real drawing order.

<path> (M L H V C S Q T A Z, absolute and relative; A is approximated by a straight line to its
end point), <polyline>, <polygon>, <line>; `transform` on any element, composed down the tree.
Every subpath (each M/m) is one stroke, in document order. Other elements (<rect>, <circle>,
<text>, ...) are ignored: sketch apps use <rect> for the background. The strokes are drawn by
strokes.render_strokes.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from stbir_jax.data.strokes import SketchError

_CURVE_SEGMENTS = 16  # per Bézier; RDP after scaling removes the excess points
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
  matrix = np.eye(3)
  if not text or not text.strip():
    return matrix
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
    step = np.eye(3)
    if name == 'matrix' and len(args) == 6:
      a, b, c, d, e, f = args
      step = np.array([[a, c, e], [b, d, f], [0, 0, 1.0]])
    elif name == 'translate' and len(args) in (1, 2):
      step[0, 2], step[1, 2] = args[0], (args[1] if len(args) == 2 else 0.0)
    elif name == 'scale' and len(args) in (1, 2):
      step[0, 0], step[1, 1] = args[0], (args[1] if len(args) == 2 else args[0])
    elif name == 'rotate' and len(args) in (1, 3):
      angle = math.radians(args[0])
      cos, sin = math.cos(angle), math.sin(angle)
      step = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1.0]])
      if len(args) == 3:
        cx, cy = args[1:]
        step = _translate(cx, cy) @ step @ _translate(-cx, -cy)
    elif name == 'skewX' and len(args) == 1:
      step[0, 1] = math.tan(math.radians(args[0]))
    elif name == 'skewY' and len(args) == 1:
      step[1, 0] = math.tan(math.radians(args[0]))
    else:
      raise SketchError(f'transform {name}({match.group(2)}): wrong number of arguments')
    matrix = matrix @ step
  return matrix


def _translate(x, y):
  matrix = np.eye(3)
  matrix[0, 2], matrix[1, 2] = x, y
  return matrix


def _apply(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
  return pts @ matrix[:2, :2].T + matrix[:2, 2]


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
    count = _ARGS[upper]
    args = tokens[i:i + count]
    if len(args) < count or any(isinstance(arg, str) for arg in args):
      raise SketchError(f'path data: command {cmd} needs {count} numbers, got {args}')
    i += count
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
  match = re.match(rf'\s*({_NUMBER})\s*(px)?\s*$', value)
  return float(match.group(1)) if match else None


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
    width, height = _svg_length(root.get('width')), _svg_length(root.get('height'))
    if width and height:
      canvas = (0.0, 0.0, width, height)

  strokes = []

  def walk(el, matrix):
    if _hidden(el):
      return
    try:
      matrix = matrix @ parse_transform(el.get('transform'))
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
        vals = [_numbers(el.get(attr) or '0', f'<line> {attr}')
                for attr in ('x1', 'y1', 'x2', 'y2')]
        if any(len(val) != 1 for val in vals):
          raise SketchError('<line>: x1, y1, x2, y2 must be single numbers')
        local = [np.array([[vals[0][0], vals[1][0]], [vals[2][0], vals[3][0]]])]
    except SketchError as e:
      raise SketchError(f'{name}: {e}') from None
    strokes.extend(_apply(matrix, stroke) for stroke in local)
    for child in el:
      walk(child, matrix)

  walk(root, np.eye(3))
  return strokes, canvas
