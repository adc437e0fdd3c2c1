"""The parametric chair designs: dining chair, armchair, office chair, stool (a front view
in slight perspective)."""

import math

import numpy as np

from stbir_jax.data.synth.geometry import Path, band, chaikin, ellipse, fill, lathe, line, rect

LEVELS = {
    'dining chair': {
        'back': ('rect', 'arched', 'rounded', 'ladder', 'spindle'), 'back_h': (0.7, 0.9, 1.08),
        'legs': ('straight', 'tapered', 'splayed', 'turned'), 'stretcher': (0, 1),
        'arms': ('none', 'post'), 'seat': ('rect', 'rounded'), 'seat_t': (0.06, 0.12),
    },
    'armchair': {
        'back': ('rect', 'rounded', 'wing'), 'back_h': (0.5, 0.68, 0.85),
        'legs': ('straight', 'tapered', 'bun'), 'arms': ('square', 'rolled', 'slim'),
        'seat': ('rect',), 'seat_t': (0.18, 0.28), 'skirt': (0, 1),
    },
    'office chair': {
        'back': ('rect', 'rounded', 'tall'), 'headrest': (0, 1), 'arms': ('none', 'tee'),
        'spokes': (4, 5), 'back_h': (0.5, 0.68), 'seat': ('rounded',), 'seat_t': (0.08, 0.14),
    },
    'stool': {
        'seat': ('round', 'square'), 'legs_n': (3, 4), 'footrest': (0, 1), 'back': ('none', 'low'),
        'height': (0.8, 1.05), 'legs': ('straight', 'splayed'), 'seat_t': (0.06, 0.12),
    },
}


def style(rng, name):
  width = {'dining chair': (0.44, 0.54), 'armchair': (0.48, 0.56), 'office chair': (0.42, 0.5),
           'stool': (0.36, 0.46)}[name]
  return {
      'width': rng.uniform(*width),
      'leg_w': rng.uniform(0.05, 0.08),
      'depth': rng.uniform(0.13, 0.19),
      'seat_y': rng.uniform(0.38, 0.48),
      'back_taper': rng.uniform(0.0, 0.08)}


def _leg(x, y0, y1, style, lw, out):
  """A leg from (x, y0) down to y1; `out` (+1/-1) is the splay direction."""
  if style == 'tapered':
    return np.array([(x - lw / 2, y0), (x + lw / 2, y0), (x + lw / 4, y1), (x - lw / 4, y1)])
  if style == 'splayed':
    splay = 0.12 * out
    return np.array([(x - lw / 2, y0), (x + lw / 2, y0), (x + splay + lw / 3, y1),
                     (x + splay - lw / 3, y1)])
  if style == 'turned':
    ys = np.linspace(y0, y1, 6)
    widths = lw * np.array([0.55, 0.75, 0.35, 0.6, 0.3, 0.35])
    return lathe(list(zip(ys, widths, strict=True)), 1, x)
  if style == 'bun':
    return ellipse(x, 0.5 * (y0 + y1), lw * 0.9, 0.5 * (y1 - y0) + 0.01, 16)
  return rect(x - lw / 2, y0, x + lw / 2, y1)


def build(shape, name):
  floor, half_w, depth, lw = 0.95, shape['width'], shape['depth'], shape['leg_w']
  st = shape['seat_t']
  sy = (floor - shape['height'] if name == 'stool'
        else shape['seat_y'] + (0.1 if name == 'armchair' else 0))
  if name == 'office chair':
    sy = 0.3
  bw = (0.86 - shape['back_taper']) * half_w
  els = []
  # Seat outline: a trapezoid top in perspective plus its front face.
  if shape['seat'] == 'round':
    seat = np.vstack([
        ellipse(0, sy - depth / 2, half_w, depth / 2 + 0.02, 20, math.pi, 2 * math.pi),
        ellipse(0, sy - depth / 2 + st, half_w, depth / 2 + 0.02, 20, 0, math.pi)
    ])
    edge = ellipse(0, sy - depth / 2, half_w, depth / 2 + 0.02, 14, 0.1, math.pi - 0.1)
  else:
    corner = 0.1 if shape['seat'] == 'rounded' else 0.0
    seat = Path(-bw, sy - depth).to(bw, sy - depth).to(half_w - corner * 0.3, sy - corner * 0.5)
    seat.quad(half_w, sy, half_w, sy + corner * 0.5)
    seat.to(half_w, sy + st).to(-half_w, sy + st).to(-half_w, sy + corner * 0.5)
    seat = seat.quad(-half_w, sy, -half_w + corner * 0.3, sy - corner * 0.5).arr()
    edge = np.array([(-half_w + 0.01, sy), (half_w - 0.01, sy)])
  # Legs (back ones first: they are behind the seat).
  y_leg = sy + st
  back_legs, front_legs = [], []
  if name == 'office chair':
    hub = floor - 0.12
    els.append(fill(rect(-0.04, y_leg - 0.02, 0.04, hub), 'secondary', rank=2))
    spokes = shape['spokes']
    for i in range(spokes):
      angle = 2 * math.pi * i / spokes + 0.35
      fx, fy = 0.6 * math.cos(angle), hub + 0.08 * math.sin(angle) + 0.03
      els.append(fill(band([(0, hub), (fx, fy)], 0.065), 'secondary', rank=2))
      els.append(fill(ellipse(fx, fy + 0.045, 0.045, 0.04, 10), 'dark', rank=3, minor=True))
  elif name == 'stool' and shape['legs_n'] == 3:
    back_legs = [(-0.78 * half_w, -1), (0.78 * half_w, 1)]
    front_legs = [(0.0, 0)]
  else:
    inset = 0.06 if name != 'armchair' else 0.1
    back_legs = [(-bw + inset, -1), (bw - inset, 1)]
    front_legs = [(-half_w + inset, -1), (half_w - inset, 1)]
  leg_style = shape.get('legs', 'straight')
  for x, splay_dir in back_legs:
    bottom = floor - 0.12 + (0.02 if leg_style == 'bun' else 0)
    els.append(fill(_leg(x, y_leg - depth, bottom, leg_style, lw, splay_dir), 'secondary', rank=2))
  # Back (behind the seat).
  back = shape.get('back', 'none')
  yb = sy - depth + 0.02
  if name == 'office chair':
    yb = sy - depth - 0.12
    els.append(fill(rect(-0.035, sy - depth + 0.02, 0.035, yb + 0.02), 'secondary', rank=2))
  if back != 'none':
    bh = shape['back_h'] if name != 'stool' else 0.28
    yt = yb - bh
    bx = bw + (0.06 if name == 'armchair' else 0)
    if back in ('rect', 'rounded', 'tall', 'arched'):
      rr = {'rect': 0.02, 'rounded': 0.16, 'tall': 0.22, 'arched': 0.02}[back]
      outline = Path(-bx, yb).to(-bx, yt + rr).quad(-bx, yt, -bx + rr, yt)
      if back == 'arched':
        outline.quad(0, yt - 0.3, bx - rr, yt, n=10)
      else:
        outline.to(bx - rr, yt)
      outline.quad(bx, yt, bx, yt + rr).to(bx, yb)
      if back == 'tall':  # a lumbar waist
        pts = outline.arr()
        pts[:, 0] *= 1 - 0.12 * np.exp(-((pts[:, 1] - (yb - 0.3 * bh)) / (0.2 * bh)) ** 2)
        els.append(fill(pts, 'main', rank=0))
      else:
        els.append(fill(outline.arr(), 'main', rank=0))
    elif back == 'wing':
      pts = chaikin([(-bx, yb), (-bx - 0.06, yt + 0.3), (-bx - 0.16, yt + 0.06), (-bx + 0.1, yt),
                     (bx - 0.1, yt), (bx + 0.16, yt + 0.06), (bx + 0.06, yt + 0.3), (bx, yb)], 2)
      els.append(fill(pts, 'main', rank=0))
    elif back == 'low':
      els.append(fill(Path(-bx, yb).to(-bx, yt + 0.1).quad(0, yt - 0.08, bx, yt + 0.1).to(
          bx, yb).arr(), 'main', rank=0))
    else:  # ladder / spindle: two posts with slats between
      pw = 0.07
      els.append(fill(rect(-bx, yt, -bx + pw, yb), 'main', rank=0))
      els.append(fill(rect(bx - pw, yt, bx, yb), 'main', rank=1))
      if back == 'ladder':
        for i in range(3):
          y = yt + 0.06 + i * 0.2 * bh
          els.append(fill(rect(-bx + pw, y, bx - pw, y + 0.08), 'main', rank=2))
      else:
        els.append(fill(rect(-bx + pw, yt + 0.03, bx - pw, yt + 0.14), 'main', rank=2))
        for x in np.linspace(-bx + pw, bx - pw, 6)[1:-1]:
          els.append(fill(rect(x - 0.02, yt + 0.14, x + 0.02, yb), 'main', rank=2))
    if shape.get('headrest'):
      els.append(fill(rect(-0.03, yt - 0.1, 0.03, yt + 0.02), 'secondary', rank=2))
      cushion = Path(-0.24, yt - 0.08).to(-0.24, yt - 0.2).quad(0, yt - 0.28, 0.24, yt - 0.2)
      els.append(fill(cushion.to(0.24, yt - 0.08).arr(), 'main', rank=1))
  seat_el = fill(seat, 'main', rank=0 if back == 'none' else 1)
  els.append(seat_el)
  els.append(line(edge, 'dark', rank=1, width=0.012))
  for x, splay_dir in front_legs:
    els.append(fill(_leg(x, y_leg - 0.01, floor, leg_style, lw, splay_dir), 'secondary', rank=2))
  if shape.get('stretcher'):
    y = y_leg + 0.6 * (floor - y_leg)
    els.append(fill(rect(-half_w + 0.06, y, half_w - 0.06, y + 0.045), 'secondary', rank=2))
  if shape.get('footrest'):
    y = y_leg + 0.55 * (floor - y_leg)
    if shape['legs_n'] == 3:
      els.append(line(ellipse(0, y - 0.03, 0.62 * half_w, 0.07, 20), 'metal', width=0.035,
                      closed=True))
    else:
      els.append(fill(rect(-half_w + 0.06, y, half_w - 0.06, y + 0.045), 'secondary', rank=2))
  if shape.get('skirt'):
    els.append(
        fill(rect(-half_w - 0.02, sy + st - 0.01, half_w + 0.02, sy + st + 0.1), 'main', rank=1))
  arms = shape.get('arms', 'none')
  for sign in (-1, 1):
    if arms == 'post':
      x = sign * (half_w - 0.03)
      els.append(fill(rect(x - 0.025, sy - 0.32, x + 0.025, sy), 'secondary', rank=2))
      els.append(fill(rect(x - 0.05, sy - 0.37, x + 0.07 * sign, sy - 0.31), 'secondary', 2))
    elif arms == 'tee':
      x = sign * (half_w - 0.08)
      els.append(fill(rect(x - 0.025, sy - 0.28, x + 0.025, sy - 0.02), 'secondary', rank=2))
      els.append(fill(rect(x - 0.09, sy - 0.33, x + 0.09, sy - 0.27), 'secondary', rank=2))
    elif arms in ('square', 'rolled', 'slim'):
      aw = 0.08 if arms == 'slim' else 0.2
      xi, xo, yt = sign * half_w, sign * (half_w + aw), sy - 0.3
      outline = Path(xi, sy + st).to(xi, yt + 0.02)
      if arms == 'rolled':
        outline.quad(xi, yt - 0.05, 0.5 * (xi + xo), yt - 0.06).quad(xo + 0.06 * sign, yt - 0.06,
                                                                     xo + 0.05 * sign, yt + 0.06)
        outline.quad(xo, yt + 0.1, xo, yt + 0.14)
      else:
        outline.to(xi, yt).to(xo, yt)
      outline.to(xo, sy + st)
      els.append(fill(outline.arr(), 'main', rank=1))
  return els
