"""Rendering one instance: the photo (filled parts, shading, materials, pattern, background)
and a simulated drawer's contour sketch as a stroke-order map, both at the same pose."""

import math

import numpy as np
from PIL import Image, ImageDraw

from stbir_jax.data.synth.spec import MATERIALS, PALETTE

_GRIDS = {}


def _grid(size):
  if size not in _GRIDS:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    _GRIDS[size] = (xx, yy)
  return _GRIDS[size]


class Drawing:
  """The elements of one structure, flattened once for fast per-instance rendering."""

  def __init__(self, els):
    self.els = els
    self.points = np.vstack([e.pts for e in els])
    self.rank = np.array([e.rank for e in els])
    self.minor = np.array([e.minor for e in els])
    # Sketch paths: closed outlines repeat their first point; arclength per element, the
    # elements laid end to end on one axis (a gap of 1 between them) for one np.interp.
    paths, cums, offsets, totals = [], [], [], []
    off = 0.0
    for e in els:
      p = np.vstack([e.pts, e.pts[:1]]) if (not e.line or e.closed) else e.pts
      seg = np.hypot(*np.diff(p, axis=0).T)
      cum = np.concatenate([[0.0], np.cumsum(seg)])
      paths.append(p)
      cums.append(cum + off)
      offsets.append(off)
      totals.append(max(cum[-1], 1e-6))
      off += cum[-1] + 1.0
    self.path = np.vstack(paths)
    self.cum = np.concatenate(cums)
    self.offset = np.array(offsets)
    self.total = np.array(totals)
    self.closed = np.array([not e.line or e.closed for e in els])


def pose(rng, drawing, resolution):
  """Affine map object -> pixel coordinates: the object's box centred, small jitter."""
  lo, hi = drawing.points.min(0), drawing.points.max(0)
  centre = 0.5 * (lo + hi)
  extent = max(hi[0] - lo[0], hi[1] - lo[1])
  scale = resolution * 0.86 / extent * rng.uniform(0.86, 1.0)
  angle = math.radians(rng.uniform(-5, 5))
  linear = scale * np.array([[math.cos(angle), -math.sin(angle)],
                             [math.sin(angle), math.cos(angle)]])
  translation = resolution / 2 + rng.uniform(-0.04, 0.04, 2) * resolution - linear @ centre
  return linear, translation


def _material_field(kind, amp, gloss, texel, xx, yy, noise, u, v, shading):
  """Multiplicative texture and additive highlight fields of one material (p: texel size)."""
  if kind == 'weave':
    tex = 1 + amp * (((xx // texel + yy // texel) % 2) * 2 - 1)
  elif kind == 'noise':
    tex = 1 + amp * 2 * noise
  elif kind == 'mesh':
    tex = 1 - amp * (((xx % (2 * texel)) < texel) & ((yy % (2 * texel)) < texel))
  elif kind == 'grain':
    tex = 1 + amp * np.sin(yy * (6.0 / texel) + 2.5 * np.sin(xx * (0.6 / texel)) + 4 * noise)
  elif kind == 'straw':
    tex = 1 + amp * np.sign(np.sin((xx + yy) * (1.5 / texel)) * np.sin((xx - yy) * (1.5 / texel)))
  elif kind == 'brushed':
    tex = 1 + amp * np.sin(xx * (2.0 / texel) + 3 * noise)
  else:
    tex = np.float32(1.0)
  if gloss == 0:
    return tex, np.float32(0.0)
  if shading == 'cylinder':
    hl = np.exp(-((u - 0.3) / 0.07) ** 2)
  else:
    hl = np.exp(-((u - 0.35) / 0.25) ** 2 - ((v - 0.18) / 0.1) ** 2)
  return tex, (gloss * 0.75 * 255) * hl


def _select(idx, fields):
  out = fields[0]
  for j in range(1, len(fields)):
    out = np.where(idx == j, fields[j], out)
  return out


def render_photo(rng, drawing, appearance, category, linear, translation, resolution):
  supersampled = 2 * resolution  # 2x supersampling, averaged down: cheap anti-aliasing
  linear_ss, translation_ss = 2 * linear, 2 * translation + 0.5
  els = drawing.els
  fills = Image.new('L', (supersampled, supersampled), 0)
  lines = Image.new('L', (supersampled, supersampled), 0)
  draw_fills, draw_lines = ImageDraw.Draw(fills), ImageDraw.Draw(lines)
  scale = float(np.sqrt(abs(np.linalg.det(linear_ss))))
  pix = drawing.points @ linear_ss.T + translation_ss
  flat = pix.ravel().tolist()
  start = 0
  for index, element in enumerate(els, 1):
    seg = flat[start:start + 2 * len(element.pts)]
    start += 2 * len(element.pts)
    if element.line:
      draw_lines.line(seg + seg[:2] if element.closed else seg, fill=index,
                      width=max(1, round(element.width * scale)), joint='curve')
    else:
      draw_fills.polygon(seg, fill=index)
  roles = ['bg'] + [element.role for element in els]

  # Everything about the object happens inside its (padded) box.
  x0, y0 = np.maximum(np.floor(pix.min(0)).astype(int) - 3, 0)
  x1, y1 = np.minimum(np.ceil(pix.max(0)).astype(int) + 4, supersampled)
  pf = np.asarray(fills)[y0:y1, x0:x1]
  pl = np.asarray(lines)[y0:y1, x0:x1]
  pm = np.where(pl > 0, pl, pf)
  gx, gy = _grid(supersampled)
  xx, yy = gx[y0:y1, x0:x1], gy[y0:y1, x0:x1]

  main = np.array(PALETTE[appearance['main_colour']], np.float32)
  role_colour = {
      'main': main,
      'secondary': np.array(PALETTE[appearance['secondary_colour']], np.float32),
      'accent': np.array(PALETTE[appearance['accent_colour']], np.float32),
      'dark': main * 0.25 + 12,
      'metal': np.array((178, 180, 186), np.float32),
      'bg': np.zeros(3, np.float32)
  }
  role_mat = {'main': appearance['material'], 'secondary': appearance['secondary_material'],
              'accent': 'plastic', 'dark': 'rubber', 'metal': 'metal', 'bg': 'rubber'}
  colour = np.stack([role_colour[r] for r in roles])
  mat_names = sorted({role_mat[r] for r in roles})
  mat_idx = np.array([mat_names.index(role_mat[r]) for r in roles])

  # Background: a random two-colour gradient and a soft contact shadow.
  c0, c1 = rng.uniform(60, 250, (2, 3)).astype(np.float32)
  ang = rng.uniform(0, 2 * math.pi)
  ramp = np.linspace(-0.5, 0.5, supersampled, dtype=np.float32)
  tt = ramp[None, :] * math.cos(ang) + ramp[:, None] * math.sin(ang) + 0.5
  img = c0 + (c1 - c0) * tt[..., None]
  ox0, ox1 = pix[:, 0].min(), pix[:, 0].max()
  oy1 = pix[:, 1].max()
  sy0 = int(max(0, oy1 - 0.15 * supersampled))
  sy1 = int(min(supersampled, oy1 + 0.15 * supersampled))
  if sy1 > sy0:
    shadow = np.exp(-((gx[sy0:sy1] - 0.5 * (ox0 + ox1)) / (0.55 * (ox1 - ox0) + 1)) ** 2
                    - ((gy[sy0:sy1] - oy1) / (0.06 * supersampled)) ** 2)
    img[sy0:sy1] *= (1 - 0.45 * shadow)[..., None]

  u = (xx - ox0) / max(1.0, ox1 - ox0)
  v = (yy - pix[:, 1].min()) / max(1.0, oy1 - pix[:, 1].min())
  if category.shading == 'cylinder':
    light = 0.72 + 0.4 * np.cos((u - 0.38) * 2.2)
  else:
    light = 1.12 - 0.3 * v - 0.1 * u
  noise = rng.random(xx.shape, dtype=np.float32) - 0.5
  texel = max(2.0, supersampled / 48)
  fields = [_material_field(MATERIALS[n][3], MATERIALS[n][4], MATERIALS[n][2], texel, xx, yy,
                            noise, u, v, category.shading) for n in mat_names]
  mi = mat_idx[pm]
  tex = _select(mi, [f[0] for f in fields])
  hl = _select(mi, [f[1] for f in fields])

  base = colour[pm]
  if appearance['pattern'] != 'plain':
    period = max(4.0, max(ox1 - ox0, oy1 - pix[:, 1].min()) / 11)
    if appearance['pattern'] == 'striped':
      pat = ((xx * 0.5 + yy * 0.87) // (period / 2)) % 2 == 0
    elif appearance['pattern'] == 'dotted':
      pat = ((xx % period) - period / 2)**2 + ((yy % period) - period / 2)**2 < (0.24 * period)**2
    else:
      pat = ((xx // (period * 0.7)) + (yy // (period * 0.7))) % 2 == 0
    is_main = np.array([r == 'main' for r in roles])[pm]
    base = np.where((pat & is_main)[..., None],
                    np.array(PALETTE[appearance['pattern_colour']], np.float32), base)
  obj_col = base * (light * tex)[..., None] + np.asarray(hl)[..., None]
  # Dark outlines where one filled part meets another or the background.
  dy = pf[:-1] != pf[1:]
  dx = pf[:, :-1] != pf[:, 1:]
  edge = np.zeros(pf.shape, bool)
  edge[:-1] |= dy
  edge[1:] |= dy
  edge[:, :-1] |= dx
  edge[:, 1:] |= dx
  edge &= pl == 0
  shade = np.where(edge, np.float32(0.5), np.float32(1.0))
  obj_col *= shade[..., None]
  crop = img[y0:y1, x0:x1]
  img[y0:y1, x0:x1] = np.where((pm > 0)[..., None], obj_col, crop)
  img = (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]) * 0.25 + 0.5
  return np.clip(img, 0, 255, out=img).astype(np.uint8)


def render_sketch(rng, drawing, linear, translation, resolution, drawer_pose=None):
  """One simulated drawer's contour sketch as a stroke-order map (R, R) uint8.

  `drawer_pose`, a list, receives the drawer's own rotation (radians), scale and shift (pixels)
  of the photo's pose, which is what a perfect reader of the sketch could recover (ceiling.py).
  """
  pixel = resolution / 64.0
  n_el = len(drawing.els)
  wobble = rng.uniform(0.1, 0.5) * pixel
  spacing = rng.uniform(1.5, 4.0) * pixel
  omit = rng.uniform(0.2, 0.8)
  width = int(rng.integers(1, 3)) + resolution // 160
  split = rng.uniform(0.0, 0.5)
  angle = math.radians(rng.uniform(-4, 4))
  drawer_scale = rng.uniform(0.95, 1.04)
  drawer_linear = drawer_scale * np.array([[math.cos(angle), -math.sin(angle)],
                                           [math.sin(angle), math.cos(angle)]])
  centre = np.array([resolution / 2, resolution / 2])
  shift = rng.uniform(-0.03, 0.03, 2) * resolution
  if drawer_pose is not None:
    drawer_pose.append({'rotation': angle, 'scale': drawer_scale, 'shift': shift})
  linear_total = drawer_linear @ linear
  translation_total = drawer_linear @ (translation - centre) + centre + shift
  scale = math.sqrt(abs(np.linalg.det(linear_total)))
  r_omit, r_order, r_over, r_split, r_cut = rng.random((5, n_el))
  phase = rng.uniform(0, 2 * math.pi, (2, n_el))

  # Outline first, then parts, then details; drawers shuffle within a group.
  keep = ~(drawing.minor & (r_omit < omit))
  order = np.lexsort((np.where(drawing.rank == 0, 0.0, r_order), drawing.rank))
  order = order[keep[order]]
  total = drawing.total[order]
  closed = drawing.closed[order]
  end = total * np.where(closed, 1 + (r_over[order] * 0.08 - 0.02), 1.0)
  num_points = np.maximum(2, (end * scale / spacing).astype(int) + 1)
  starts = np.concatenate([[0], np.cumsum(num_points)[:-1]])
  local = np.arange(num_points.sum()) - np.repeat(starts, num_points)
  frac = local / np.repeat(num_points - 1, num_points)
  arclength = (np.repeat(drawing.offset[order], num_points)
               + (frac * np.repeat(end, num_points)) % np.repeat(total, num_points))
  pts = np.stack([
      np.interp(arclength, drawing.cum, drawing.path[:, 0]),
      np.interp(arclength, drawing.cum, drawing.path[:, 1])
  ], 1)
  pts = pts @ linear_total.T + translation_total
  # Smooth wobble along each stroke's normal plus a little tremor.
  length = np.repeat(end * scale, num_points)
  cyc = np.maximum(1.0, length / (30 * pixel))
  off = wobble * (np.sin(np.pi * cyc * frac + np.repeat(phase[0, order], num_points))
                  + 0.5 * np.sin(2 * np.pi * cyc * frac + np.repeat(phase[1, order], num_points)))
  direction = np.empty_like(pts)
  direction[:-1] = pts[1:] - pts[:-1]
  last = starts + num_points - 1
  direction[last] = direction[last - 1]
  direction /= np.hypot(direction[:, 0], direction[:, 1])[:, None] + 1e-9
  pts += np.stack([-direction[:, 1], direction[:, 0]], 1) * off[:, None]
  pts += rng.normal(0, 0.15 * wobble, pts.shape)
  flat = pts.ravel().tolist()

  img = Image.new('L', (resolution, resolution), 0)
  draw = ImageDraw.Draw(img)
  joint = 'curve' if width > 1 else None
  stroke = 0
  for j in range(len(order)):
    start, size = 2 * starts[j], 2 * num_points[j]
    if closed[j] and num_points[j] > 8 and r_split[order[j]] < split:
      cut = 2 * (num_points[j] // 3 + int(r_cut[order[j]] * (num_points[j] // 3)))
      pieces = [flat[start:start + cut + 2], flat[start + cut:start + size]]
    else:
      pieces = [flat[start:start + size]]
    for piece in pieces:
      stroke += 1
      draw.line(piece, fill=min(stroke, 255), width=width, joint=joint)
  return np.asarray(img)
