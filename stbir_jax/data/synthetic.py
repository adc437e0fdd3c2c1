"""STBIR-Synth: a procedural fine-grained sketch+text benchmark (numpy + PIL only).

Every category has a parametric 2D shape model. A *family* fixes a base design
(category, base structure, base appearance); its K structural variants change a
few contour parameters (heel height, lace count, leg style, handle shape...) and
its M appearance variants change only colour, pattern and material, always
including the main colour. So the K*M instances of a family are twins:

  * appearance twins (same k) have identical structure: only text separates them;
  * structural twins (same m) have identical appearance: only the sketch does.

Descriptions always name the main colour and never the structural variant;
sketches are contour-only stroke-order maps aligned with the photo's object.

Everything is deterministic from `SynthSpec.seed`: each family draws from
`np.random.default_rng((seed, config, split, family, ...))`, so splits and
families can be generated independently (and in parallel).
"""

import dataclasses
import math
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

SPLITS = ('train', 'validation', 'test')

CONFIGS = {
    'shoes': ('sneaker', 'boot', 'high heel', 'loafer'),
    'chairs': ('dining chair', 'armchair', 'office chair', 'stool'),
    'daily': ('mug', 'lamp', 'bottle', 'bag', 'hat', 'vase'),
}

PALETTE = {
    'red': (196, 32, 38), 'blue': (48, 100, 214), 'green': (46, 148, 64),
    'yellow': (240, 204, 46), 'black': (30, 30, 34), 'white': (238, 238, 232),
    'brown': (118, 72, 40), 'grey': (132, 134, 140), 'pink': (238, 136, 178),
    'orange': (238, 128, 32), 'purple': (118, 52, 160), 'navy': (26, 36, 92),
}
COLOURS = tuple(PALETTE)
PATTERNS = ('plain', 'striped', 'dotted', 'checked')

# name -> (adjective, noun phrase, gloss, texture kind, texture amplitude)
MATERIALS = {
    'leather': ('leather', 'leather', 0.25, 'noise', 0.05),
    'patent': ('patent leather', 'patent leather', 0.6, 'none', 0.0),
    'canvas': ('canvas', 'canvas', 0.0, 'weave', 0.09),
    'suede': ('suede', 'suede', 0.0, 'noise', 0.12),
    'mesh': ('mesh', 'breathable mesh', 0.05, 'mesh', 0.18),
    'rubber': ('rubber', 'rubber', 0.1, 'noise', 0.03),
    'cork': ('cork', 'cork', 0.0, 'noise', 0.2),
    'wood': ('wooden', 'wood', 0.1, 'grain', 0.14),
    'fabric': ('fabric', 'fabric', 0.0, 'weave', 0.07),
    'velvet': ('velvet', 'velvet', 0.12, 'noise', 0.07),
    'metal': ('metal', 'metal', 0.55, 'brushed', 0.08),
    'plastic': ('plastic', 'plastic', 0.35, 'none', 0.0),
    'ceramic': ('ceramic', 'ceramic', 0.45, 'none', 0.0),
    'glass': ('glass', 'glass', 0.75, 'none', 0.0),
    'paper': ('paper', 'paper', 0.0, 'noise', 0.04),
    'felt': ('felt', 'felt', 0.0, 'noise', 0.09),
    'straw': ('straw', 'woven straw', 0.05, 'straw', 0.16),
    'wool': ('wool', 'wool', 0.0, 'weave', 0.1),
    'cotton': ('cotton', 'cotton', 0.0, 'weave', 0.05),
}


# ----------------------------------------------------------------------------- spec


@dataclasses.dataclass(frozen=True)
class SynthSpec:
  """Size and seed of one generated configuration."""
  resolution: int = 64
  train_families: int = 256
  validation_families: int = 16
  test_families: int = 64
  structural_variants: int = 4
  appearance_variants: int = 4
  sketches_per_instance: int = 3
  texts_per_instance: int = 3
  seed: int = 0

  @classmethod
  def from_config(cls, data_config) -> 'SynthSpec':
    """From `config.data`: its `resolution` and every field of `config.data.synth`."""
    synth = data_config.synth
    names = [f.name for f in dataclasses.fields(cls) if f.name != 'resolution']
    unknown = sorted(set(synth.keys()) - set(names))
    if unknown:
      raise ValueError(f'Unknown config.data.synth keys {unknown}; valid keys: {", ".join(names)}')
    return cls(resolution=int(data_config.resolution), **{k: int(synth[k]) for k in synth.keys()})

  def families(self, split: str) -> int:
    return {'train': self.train_families, 'validation': self.validation_families,
            'test': self.test_families}[SPLITS[_split_index(split)]]


def _config_index(config_name):
  if config_name not in CONFIGS:
    raise ValueError(f'Unknown STBIR-Synth configuration {config_name!r}; valid configurations: '
                     f'{", ".join(CONFIGS)}')
  return list(CONFIGS).index(config_name)


def _split_index(split):
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r}; valid splits: {", ".join(SPLITS)}')
  return SPLITS.index(split)


def _check_spec(spec):
  if not 16 <= spec.resolution <= 1024:
    raise ValueError(f'SynthSpec.resolution must be in [16, 1024], got {spec.resolution}')
  if not 1 <= spec.appearance_variants <= len(COLOURS):
    raise ValueError(f'SynthSpec.appearance_variants must be in [1, {len(COLOURS)}] (one main '
                     f'colour each), got {spec.appearance_variants}')
  if spec.structural_variants < 1:
    raise ValueError(f'SynthSpec.structural_variants must be >= 1, got {spec.structural_variants}')
  for name in ('train_families', 'validation_families', 'test_families', 'sketches_per_instance',
               'texts_per_instance'):
    if getattr(spec, name) < 0:
      raise ValueError(f'SynthSpec.{name} must be >= 0, got {getattr(spec, name)}')


def num_instances(config_name: str, split: str, spec: SynthSpec) -> int:
  """Number of records `generate(config_name, split, spec)` yields."""
  _config_index(config_name)
  return spec.families(split) * spec.structural_variants * spec.appearance_variants


def _family_offset(split, spec):
  return sum(spec.families(s) for s in SPLITS[:_split_index(split)])


# ----------------------------------------------------------------------------- geometry


class _Path:
  """A polyline builder with Bezier segments (object coordinates, y down)."""

  def __init__(self, x, y):
    self.p = [(float(x), float(y))]

  def to(self, x, y):
    self.p.append((float(x), float(y)))
    return self

  def quad(self, cx, cy, x, y, n=6):
    p0, c, p1 = np.array(self.p[-1]), np.array((cx, cy)), np.array((x, y))
    t = np.linspace(0, 1, n + 1)[1:, None]
    self.p.extend(map(tuple, (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t ** 2 * p1))
    return self

  def cubic(self, c1x, c1y, c2x, c2y, x, y, n=8):
    p0, c1, c2, p1 = (np.array(v) for v in (self.p[-1], (c1x, c1y), (c2x, c2y), (x, y)))
    t = np.linspace(0, 1, n + 1)[1:, None]
    pts = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t ** 2 * c2 + t ** 3 * p1
    self.p.extend(map(tuple, pts))
    return self

  def extend(self, pts):
    self.p.extend(map(tuple, np.asarray(pts, float)))
    return self

  def arr(self):
    return np.asarray(self.p, np.float64)


def _chaikin(pts, iters=2):
  """Corner cutting of an open polyline; the end points stay."""
  pts = np.asarray(pts, np.float64)
  for _ in range(iters):
    q = 0.75 * pts[:-1] + 0.25 * pts[1:]
    r = 0.25 * pts[:-1] + 0.75 * pts[1:]
    mid = np.empty((2 * len(q), 2))
    mid[0::2], mid[1::2] = q, r
    pts = np.vstack([pts[:1], mid, pts[-1:]])
  return pts


def _ellipse(cx, cy, rx, ry, n=24, a0=0.0, a1=2 * math.pi):
  a = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-6)
  return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def _rect(x0, y0, x1, y1):
  return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)


def _lathe(profile, smooth=2, cx=0.0):
  """Symmetric outline from [(y, half_width), ...] listed top to bottom."""
  prof = np.asarray(profile, np.float64)
  if smooth:
    prof = _chaikin(prof, smooth)
  right = np.stack([cx + prof[:, 1], prof[:, 0]], 1)
  left = np.stack([cx - prof[::-1, 1], prof[::-1, 0]], 1)
  return np.vstack([right, left])


def _band(center, width):
  """Closed outline of a stroke of `width` along an open centre line."""
  c = np.asarray(center, np.float64)
  tan = np.gradient(c, axis=0)
  tan /= np.linalg.norm(tan, axis=1, keepdims=True) + 1e-9
  nrm = np.stack([-tan[:, 1], tan[:, 0]], 1) * (np.asarray(width)[..., None] / 2)
  return np.vstack([c + nrm, (c - nrm)[::-1]])


def _halfwidth(poly, y, side=1):
  """Half width of a lathe outline at height y (right side when side=1)."""
  pts = poly[:len(poly) // 2]
  order = np.argsort(pts[:, 1])
  return float(np.interp(y, pts[order, 1], pts[order, 0])) * side


@dataclasses.dataclass
class _El:
  """One drawn element: a filled closed outline, or an open/closed line of `width`."""
  pts: np.ndarray
  role: str                 # main | secondary | accent | dark | metal
  rank: int = 1             # sketch order group: 0 = the outline, drawn first
  minor: bool = False       # a drawer may omit it
  line: bool = False        # a line (photo: width), not a filled outline
  closed: bool = True
  width: float = 0.02       # line width in object units


def _fill(pts, role, rank=1, minor=False):
  return _El(np.asarray(pts, np.float64), role, rank, minor)


def _line(pts, role, rank=2, minor=False, width=0.02, closed=False):
  return _El(np.asarray(pts, np.float64), role, rank, minor, True, closed, width)


# ----------------------------------------------------------------------------- shoes

_SHOE_LEVELS = {
    'sneaker': dict(toe=('round', 'square'), heel=(0.0,), heel_type=('block',),
                    collar=(0.42, 0.54, 0.66), sole=(0.08, 0.14, 0.2), laces=(3, 4, 5, 6),
                    strap=(0, 1), toe_cap=(0, 1), tassel=(0,)),
    'boot': dict(toe=('round', 'square', 'pointed'), heel=(0.04, 0.12, 0.2), heel_type=('block',),
                 collar=(0.8, 1.0, 1.2), sole=(0.07, 0.11, 0.16), laces=(0, 4, 6), strap=(0, 1),
                 toe_cap=(0, 1), tassel=(0,)),
    'high heel': dict(toe=('pointed', 'round'), heel=(0.36, 0.5, 0.64),
                      heel_type=('stiletto', 'block', 'wedge'), collar=(0.2, 0.32),
                      sole=(0.03, 0.09), laces=(0,), strap=(0, 1), toe_cap=(0,), tassel=(0,)),
    'loafer': dict(toe=('round', 'square', 'pointed'), heel=(0.04, 0.09), heel_type=('block',),
                   collar=(0.25, 0.34), sole=(0.06, 0.1), laces=(0,), strap=(0, 1),
                   toe_cap=(0, 1), tassel=(0, 1)),
}


def _shoe_style(rng, cat):
  throat = {'sneaker': (0.44, 0.52), 'boot': (0.34, 0.42), 'high heel': (0.0, 0.0),
            'loafer': (0.32, 0.38)}[cat]
  return dict(length=rng.uniform(0.84, 0.92), toe_h=rng.uniform(0.22, 0.28),
              throat_x=rng.uniform(-0.3, -0.08), throat_h=rng.uniform(*throat),
              lean=rng.uniform(-0.02, 0.06), vamp_curve=rng.uniform(-0.1, -0.02))


def _shoe(s, cat):
  g, L, t, h, th, c = 0.55, s['length'], s['sole'], s['heel'], s['toe_h'], s['collar']
  x0, x1 = -L, L
  xb = 0.25 * L
  # Foot bed (top of the sole) from toe to heel: flat forefoot, raised by the heel at the back.
  bed = _Path(x1, g - t).to(xb, g - t).cubic(xb - 0.3, g - t, x0 + 0.55, g - t - h, x0 + 0.25,
                                              g - t - h, 10).to(x0, g - t - h).arr()
  bx, by = bed[::-1, 0], bed[::-1, 1]

  def bed_y(x):
    return float(np.interp(x, bx, by))

  els = []
  # Upper: heel counter up to the collar, (shaft), throat, vamp, toe, back along the bed.
  back = (x0 - s['lean'], g - t - h - c)
  up = _Path(x0, g - t - h).quad(x0 - s['lean'] - 0.05, g - t - h - 0.5 * c, *back)
  toe_top = (x1 - 0.38, g - t - th)
  boot = c >= 0.5
  if boot:
    front = (x0 - s['lean'] + 0.44, back[1] + 0.02)
    throat = (front[0] + 0.1, g - t - th - s['throat_h'])
    up.to(*front).quad(front[0], throat[1] - 0.05, *throat)
  elif cat == 'high heel':
    throat = (0.15 * L, g - t - th - 0.03)
    up.quad(0.5 * (back[0] + throat[0]), back[1] + 0.45 * c + 0.5 * h, *throat, n=8)
  else:
    throat = (s['throat_x'] * L, bed_y(s['throat_x'] * L) - s['throat_h'])
    up.quad(0.5 * (back[0] + throat[0]), back[1] + 0.3 * c, *throat)
  n_up = len(up.p)
  mid = (0.5 * (throat[0] + toe_top[0]), 0.5 * (throat[1] + toe_top[1]) + s['vamp_curve'])
  up.quad(mid[0], mid[1], *toe_top, n=8)
  vamp = np.asarray(up.p[n_up - 1:])
  if s['toe'] == 'round':
    up.quad(x1 + 0.04, g - t - th, x1 + 0.04, g - t - 0.35 * th).quad(x1 + 0.04, g - t, x1, g - t)
  elif s['toe'] == 'pointed':
    up.quad(x1 - 0.08, g - t - 0.75 * th, x1 + 0.1, g - t - 0.02).to(x1, g - t)
  else:
    up.to(x1 - 0.08, g - t - th).quad(x1 + 0.02, g - t - th, x1 + 0.02, g - t - 0.7 * th)
    up.to(x1 + 0.02, g - t)
  up.extend(bed[1:-1])
  upper = up.arr()

  laced = s['laces'] > 0
  if laced:  # the tongue shows above the lacing, behind the upper
    tx, ty = throat
    els.append(_fill([(tx - 0.02, ty + 0.06), (tx - 0.07, ty - 0.1), (tx + 0.05, ty - 0.13),
                      (tx + 0.14, ty + 0.04)], 'main', rank=1))
  els.append(_fill(upper, 'main', rank=0))
  # Sole: a band under the bed with a rounded toe end.
  sole = np.vstack([[(x1 + 0.04, g - 0.55 * t)], bed, (bed + [0, t])[::-1]])
  els.append(_fill(sole, 'secondary', rank=1))
  if h > 0.001:
    def sole_y(x):
      return bed_y(x) + t
    kind = s['heel_type']
    if kind == 'wedge':
      xs = np.linspace(x0 + 0.01, xb, 8)
      heel = np.vstack([np.stack([xs, [sole_y(x) for x in xs]], 1), [(xb, g), (x0 + 0.03, g)]])
    elif kind == 'stiletto':
      heel = _Path(x0 + 0.02, sole_y(x0 + 0.02)).quad(x0 + 0.1, g - 0.45 * h, x0 + 0.15, g).to(
          x0 + 0.2, g).quad(x0 + 0.19, g - 0.5 * h, x0 + 0.27, sole_y(x0 + 0.27)).arr()
    else:
      heel = np.array([(x0 + 0.01, sole_y(x0)), (x0 + 0.3, sole_y(x0 + 0.3)),
                       (x0 + 0.27, g), (x0 + 0.05, g)])
    els.append(_fill(heel, 'secondary', rank=1))
  # Structural details.
  if laced:
    if boot:
      pts = np.linspace(throat, front, s['laces'] // 2 + 1)
      pts = np.vstack([pts, vamp[np.linspace(1, len(vamp) // 2, s['laces'] - len(pts) + 1
                                              ).astype(int)[1:]]])
    else:
      pts = vamp[np.linspace(1, int(len(vamp) * 0.6), s['laces']).astype(int)]
    for (lx, ly) in pts:
      els.append(_line([(lx - 0.05, ly + 0.055), (lx + 0.05, ly - 0.04)], 'accent', width=0.03))
  if s['strap']:
    if cat == 'sneaker':
      vx, vy = vamp[int(len(vamp) * 0.75)]
      els.append(_fill(_band([(vx + 0.02, vy - 0.01), (vx - 0.12, bed_y(vx) - 0.06)], 0.1),
                       'accent', rank=2))
    elif boot:
      y = back[1] + 0.35 * c
      els.append(_fill(_band([(x0 - s['lean'] - 0.02, y + 0.02), (front[0] + 0.04, y - 0.03)],
                             0.07), 'accent', rank=2))
      els.append(_fill(_rect(front[0] - 0.06, y - 0.07, front[0] + 0.03, y + 0.01), 'metal', 2))
    elif cat == 'high heel':
      bxx, byy = back
      els.append(_fill(_band(_Path(bxx - 0.01, byy + 0.02).quad(bxx + 0.2, byy - 0.06, bxx + 0.42,
                                                                  byy + 0.05).arr(), 0.045),
                       'accent', rank=2))
    else:  # penny strap across the saddle
      sx = throat[0] + 0.05
      pts = _Path(sx - 0.08, bed_y(sx) - s['throat_h'] + 0.08).quad(
          sx + 0.12, bed_y(sx) - s['throat_h'] + 0.06, sx + 0.3, bed_y(sx) - s['throat_h'] + 0.17)
      els.append(_fill(_band(pts.arr(), 0.06), 'accent', rank=2))
  if s['toe_cap']:
    els.append(_line(_Path(x1 - 0.34, g - t - 0.005).quad(x1 - 0.4, g - t - 0.8 * th, x1 - 0.24,
                                                          g - t - th - 0.01).arr(), 'dark',
                     width=0.015))
  if s['tassel']:
    tx, ty = throat[0] + 0.14, throat[1] + 0.06
    els.append(_line([(tx - 0.04, ty - 0.02), (tx, ty + 0.04)], 'accent', width=0.02))
    els.append(_fill(_ellipse(tx + 0.01, ty + 0.09, 0.035, 0.06, 12), 'accent', rank=2))
  # Minor details: stitching along the sole and the collar.
  els.append(_line(bed[1:-1] + [0, 0.5 * t], 'dark', rank=3, minor=True, width=0.01))
  return els


# ----------------------------------------------------------------------------- chairs

_CHAIR_LEVELS = {
    'dining chair': dict(back=('rect', 'arched', 'rounded', 'ladder', 'spindle'),
                         back_h=(0.7, 0.9, 1.08), legs=('straight', 'tapered', 'splayed', 'turned'),
                         stretcher=(0, 1), arms=('none', 'post'), seat=('rect', 'rounded'),
                         seat_t=(0.06, 0.12)),
    'armchair': dict(back=('rect', 'rounded', 'wing'), back_h=(0.5, 0.68, 0.85),
                     legs=('straight', 'tapered', 'bun'), arms=('square', 'rolled', 'slim'),
                     seat=('rect',), seat_t=(0.18, 0.28), skirt=(0, 1)),
    'office chair': dict(back=('rect', 'rounded', 'tall'), headrest=(0, 1), arms=('none', 'tee'),
                         spokes=(4, 5), back_h=(0.5, 0.68), seat=('rounded',),
                         seat_t=(0.08, 0.14)),
    'stool': dict(seat=('round', 'square'), legs_n=(3, 4), footrest=(0, 1), back=('none', 'low'),
                  height=(0.8, 1.05), legs=('straight', 'splayed'), seat_t=(0.06, 0.12)),
}


def _chair_style(rng, cat):
  w = {'dining chair': (0.44, 0.54), 'armchair': (0.48, 0.56), 'office chair': (0.42, 0.5),
       'stool': (0.36, 0.46)}[cat]
  return dict(width=rng.uniform(*w), leg_w=rng.uniform(0.05, 0.08), depth=rng.uniform(0.13, 0.19),
              seat_y=rng.uniform(0.38, 0.48), back_taper=rng.uniform(0.0, 0.08))


def _leg(x, y0, y1, style, lw, out):
  """A leg from (x, y0) down to y1; `out` (+1/-1) is the splay direction."""
  if style == 'tapered':
    return np.array([(x - lw / 2, y0), (x + lw / 2, y0), (x + lw / 4, y1), (x - lw / 4, y1)])
  if style == 'splayed':
    d = 0.12 * out
    return np.array([(x - lw / 2, y0), (x + lw / 2, y0), (x + d + lw / 3, y1), (x + d - lw / 3, y1)])
  if style == 'turned':
    ys = np.linspace(y0, y1, 6)
    return _lathe(list(zip(ys, lw * np.array([0.55, 0.75, 0.35, 0.6, 0.3, 0.35]))), 1, x)
  if style == 'bun':
    return _ellipse(x, 0.5 * (y0 + y1), lw * 0.9, 0.5 * (y1 - y0) + 0.01, 16)
  return _rect(x - lw / 2, y0, x + lw / 2, y1)


def _chair(s, cat):
  F, w, d, lw = 0.95, s['width'], s['depth'], s['leg_w']
  st = s['seat_t']
  sy = F - s['height'] if cat == 'stool' else s['seat_y'] + (0.1 if cat == 'armchair' else 0)
  if cat == 'office chair':
    sy = 0.3
  bw = (0.86 - s['back_taper']) * w
  els = []
  # Seat outline: a trapezoid top in perspective plus its front face.
  if s['seat'] == 'round':
    seat = np.vstack([_ellipse(0, sy - d / 2, w, d / 2 + 0.02, 20, math.pi, 2 * math.pi),
                      _ellipse(0, sy - d / 2 + st, w, d / 2 + 0.02, 20, 0, math.pi)])
    edge = _ellipse(0, sy - d / 2, w, d / 2 + 0.02, 14, 0.1, math.pi - 0.1)
  else:
    r = 0.1 if s['seat'] == 'rounded' else 0.0
    seat = _Path(-bw, sy - d).to(bw, sy - d).to(w - r * 0.3, sy - r * 0.5).quad(w, sy, w, sy + r * 0.5)
    seat = seat.to(w, sy + st).to(-w, sy + st).to(-w, sy + r * 0.5).quad(-w, sy, -w + r * 0.3,
                                                                        sy - r * 0.5).arr()
    edge = np.array([(-w + 0.01, sy), (w - 0.01, sy)])
  # Legs (back ones first: they are behind the seat).
  y_leg = sy + st
  back_legs, front_legs = [], []
  if cat == 'office chair':
    hub = F - 0.12
    els.append(_fill(_rect(-0.04, y_leg - 0.02, 0.04, hub), 'secondary', rank=2))
    n = s['spokes']
    for i in range(n):
      a = 2 * math.pi * i / n + 0.35
      fx, fy = 0.6 * math.cos(a), hub + 0.08 * math.sin(a) + 0.03
      els.append(_fill(_band([(0, hub), (fx, fy)], 0.065), 'secondary', rank=2))
      els.append(_fill(_ellipse(fx, fy + 0.045, 0.045, 0.04, 10), 'dark', rank=3, minor=True))
  elif cat == 'stool' and s['legs_n'] == 3:
    back_legs = [(-0.78 * w, -1), (0.78 * w, 1)]
    front_legs = [(0.0, 0)]
  else:
    inset = 0.06 if cat != 'armchair' else 0.1
    back_legs = [(-bw + inset, -1), (bw - inset, 1)]
    front_legs = [(-w + inset, -1), (w - inset, 1)]
  style = s.get('legs', 'straight')
  for x, o in back_legs:
    els.append(_fill(_leg(x, y_leg - d, F - 0.12 + (0.02 if style == 'bun' else 0), style, lw, o),
                     'secondary', rank=2))
  # Back (behind the seat).
  back = s.get('back', 'none')
  yb = sy - d + 0.02
  if cat == 'office chair':
    yb = sy - d - 0.12
    els.append(_fill(_rect(-0.035, sy - d + 0.02, 0.035, yb + 0.02), 'secondary', rank=2))
  if back != 'none':
    bh = s['back_h'] if cat != 'stool' else 0.28
    yt = yb - bh
    bx = bw + (0.06 if cat == 'armchair' else 0)
    if back in ('rect', 'rounded', 'tall', 'arched'):
      rr = {'rect': 0.02, 'rounded': 0.16, 'tall': 0.22, 'arched': 0.02}[back]
      p = _Path(-bx, yb).to(-bx, yt + rr).quad(-bx, yt, -bx + rr, yt)
      if back == 'arched':
        p.quad(0, yt - 0.3, bx - rr, yt, n=10)
      else:
        p.to(bx - rr, yt)
      p.quad(bx, yt, bx, yt + rr).to(bx, yb)
      if back == 'tall':  # a lumbar waist
        pts = p.arr()
        pts[:, 0] *= 1 - 0.12 * np.exp(-((pts[:, 1] - (yb - 0.3 * bh)) / (0.2 * bh)) ** 2)
        els.append(_fill(pts, 'main', rank=0))
      else:
        els.append(_fill(p.arr(), 'main', rank=0))
    elif back == 'wing':
      pts = _chaikin([(-bx, yb), (-bx - 0.06, yt + 0.3), (-bx - 0.16, yt + 0.06), (-bx + 0.1, yt),
                      (bx - 0.1, yt), (bx + 0.16, yt + 0.06), (bx + 0.06, yt + 0.3), (bx, yb)], 2)
      els.append(_fill(pts, 'main', rank=0))
    elif back == 'low':
      els.append(_fill(_Path(-bx, yb).to(-bx, yt + 0.1).quad(0, yt - 0.08, bx, yt + 0.1).to(
          bx, yb).arr(), 'main', rank=0))
    else:  # ladder / spindle: two posts with slats between
      pw = 0.07
      els.append(_fill(_rect(-bx, yt, -bx + pw, yb), 'main', rank=0))
      els.append(_fill(_rect(bx - pw, yt, bx, yb), 'main', rank=1))
      if back == 'ladder':
        for i in range(3):
          y = yt + 0.06 + i * 0.2 * bh
          els.append(_fill(_rect(-bx + pw, y, bx - pw, y + 0.08), 'main', rank=2))
      else:
        els.append(_fill(_rect(-bx + pw, yt + 0.03, bx - pw, yt + 0.14), 'main', rank=2))
        for x in np.linspace(-bx + pw, bx - pw, 6)[1:-1]:
          els.append(_fill(_rect(x - 0.02, yt + 0.14, x + 0.02, yb), 'main', rank=2))
    if s.get('headrest'):
      els.append(_fill(_rect(-0.03, yt - 0.1, 0.03, yt + 0.02), 'secondary', rank=2))
      els.append(_fill(_Path(-0.24, yt - 0.08).to(-0.24, yt - 0.2).quad(0, yt - 0.28, 0.24,
                                                                         yt - 0.2).to(
          0.24, yt - 0.08).arr(), 'main', rank=1))
  seat_el = _fill(seat, 'main', rank=0 if back == 'none' else 1)
  els.append(seat_el)
  els.append(_line(edge, 'dark', rank=1, width=0.012))
  for x, o in front_legs:
    els.append(_fill(_leg(x, y_leg - 0.01, F, style, lw, o), 'secondary', rank=2))
  if s.get('stretcher'):
    y = y_leg + 0.6 * (F - y_leg)
    els.append(_fill(_rect(-w + 0.06, y, w - 0.06, y + 0.045), 'secondary', rank=2))
  if s.get('footrest'):
    y = y_leg + 0.55 * (F - y_leg)
    if s['legs_n'] == 3:
      els.append(_line(_ellipse(0, y - 0.03, 0.62 * w, 0.07, 20), 'metal', width=0.035,
                       closed=True))
    else:
      els.append(_fill(_rect(-w + 0.06, y, w - 0.06, y + 0.045), 'secondary', rank=2))
  if s.get('skirt'):
    els.append(_fill(_rect(-w - 0.02, sy + st - 0.01, w + 0.02, sy + st + 0.1), 'main', rank=1))
  arms = s.get('arms', 'none')
  for sign in (-1, 1):
    if arms == 'post':
      x = sign * (w - 0.03)
      els.append(_fill(_rect(x - 0.025, sy - 0.32, x + 0.025, sy), 'secondary', rank=2))
      els.append(_fill(_rect(x - 0.05, sy - 0.37, x + 0.07 * sign, sy - 0.31), 'secondary', 2))
    elif arms == 'tee':
      x = sign * (w - 0.08)
      els.append(_fill(_rect(x - 0.025, sy - 0.28, x + 0.025, sy - 0.02), 'secondary', rank=2))
      els.append(_fill(_rect(x - 0.09, sy - 0.33, x + 0.09, sy - 0.27), 'secondary', rank=2))
    elif arms in ('square', 'rolled', 'slim'):
      aw = 0.08 if arms == 'slim' else 0.2
      xi, xo, yt = sign * w, sign * (w + aw), sy - 0.3
      p = _Path(xi, sy + st).to(xi, yt + 0.02)
      if arms == 'rolled':
        p.quad(xi, yt - 0.05, 0.5 * (xi + xo), yt - 0.06).quad(xo + 0.06 * sign, yt - 0.06,
                                                               xo + 0.05 * sign, yt + 0.06)
        p.quad(xo, yt + 0.1, xo, yt + 0.14)
      else:
        p.to(xi, yt).to(xo, yt)
      p.to(xo, sy + st)
      els.append(_fill(p.arr(), 'main', rank=1))
  return els


# ----------------------------------------------------------------------------- daily objects

_DAILY_LEVELS = {
    'mug': dict(taper=('straight', 'flared', 'tapered', 'barrel'), height=(0.8, 1.05),
                handle=('round', 'square', 'D', 'ear'), rim=(0, 1), foot=(0, 1)),
    'lamp': dict(shade=('drum', 'cone', 'bell', 'dome'), stem=('straight', 'curved', 'column',
                                                                'double'),
                 base=('disc', 'dome', 'square'), stem_h=(0.45, 0.7), finial=(0, 1)),
    'bottle': dict(body=('cylinder', 'round', 'square', 'hourglass'), neck=(0.12, 0.26, 0.4),
                   cap=('screw', 'cork', 'flip', 'dropper'), label=(0, 1), height=(1.0, 1.25)),
    'bag': dict(body=('rect', 'trapezoid', 'rounded'), handle=('two', 'shoulder', 'loop'),
                flap=(0, 1), pocket=(0, 1), buckles=(0, 1, 2)),
    'hat': dict(crown=('round', 'flat', 'pinched', 'tall'), brim=('narrow', 'wide', 'bill'),
                crown_h=(0.45, 0.65), button=(0, 1), band_h=(0.07, 0.14)),
    'vase': dict(body=('ovoid', 'cylinder', 'amphora', 'flask'), neck=(0.1, 0.25, 0.4),
                 lip=('straight', 'flared'), handles=(0, 2), foot_h=(0.04, 0.12)),
}


def _daily_style(rng, cat):
  return dict(width=rng.uniform(0.9, 1.1), tall=rng.uniform(0.92, 1.08),
              skew=rng.uniform(-0.04, 0.04))


def _mug(s):
  h, k = s['height'] * s['tall'], s['width']
  yb = 0.5
  yt = yb - h
  wt, wm, wb = {'straight': (0.42, 0.42, 0.42), 'flared': (0.5, 0.44, 0.35),
                'tapered': (0.35, 0.42, 0.48), 'barrel': (0.37, 0.5, 0.37)}[s['taper']]
  body = _lathe([(yt, wt * k), (yt + 0.5 * h, wm * k), (yb - 0.05, wb * k), (yb, wb * k - 0.05)], 2)
  y1, y2 = yt + 0.18 * h, yb - 0.22 * h
  x1, x2 = _halfwidth(body, y1) - 0.03, _halfwidth(body, y2) - 0.03
  kind = s['handle']
  if kind == 'round':
    c = _Path(x1, y1).cubic(x1 + 0.42, y1 - 0.08, x2 + 0.42, y2 + 0.08, x2, y2, 12).arr()
  elif kind == 'square':
    c = _chaikin([(x1, y1), (x1 + 0.3, y1), (x1 + 0.3, y2), (x2, y2)], 1)
  elif kind == 'D':
    c = _chaikin([(x1, y1), (x1 + 0.22, y1), (x1 + 0.32, 0.5 * (y1 + y2)), (x2 + 0.18, y2),
                  (x2, y2)], 2)
  else:
    y2 = yt + 0.5 * h
    x2 = _halfwidth(body, y2) - 0.03
    c = _Path(x1, y1).cubic(x1 + 0.32, y1 - 0.1, x2 + 0.32, y2 + 0.1, x2, y2, 10).arr()
  els = [_fill(_band(c, 0.09), 'secondary', rank=1), _fill(body, 'main', rank=0)]
  if s['rim']:
    els.append(_fill(_rect(-wt * k - 0.03, yt - 0.01, wt * k + 0.03, yt + 0.07), 'main', rank=2))
  els.append(_fill(_ellipse(0, yt, wt * k * 0.98 + 0.03 * s['rim'], 0.07, 20), 'dark', rank=1))
  if s['foot']:
    els.append(_fill(_rect(-wb * k * 0.8, yb - 0.02, wb * k * 0.8, yb + 0.07), 'main', rank=2))
  return els


def _lamp(s):
  yb = 0.9
  k = s['width']
  els = []
  if s['base'] == 'disc':
    base, bt = _lathe([(yb - 0.1, 0.3 * k), (yb - 0.04, 0.38 * k), (yb, 0.4 * k)], 1), yb - 0.1
  elif s['base'] == 'dome':
    base, bt = _lathe([(yb - 0.2, 0.06), (yb - 0.14, 0.26 * k), (yb, 0.36 * k)], 2), yb - 0.2
  else:
    base, bt = _rect(-0.3 * k, yb - 0.16, 0.3 * k, yb), yb - 0.16
  top = bt - s['stem_h'] * s['tall']
  if s['stem'] == 'straight':
    els.append(_fill(_band([(0, bt + 0.02), (0, top - 0.06)], 0.05), 'secondary', rank=1))
  elif s['stem'] == 'curved':
    c = _Path(0, bt + 0.02).cubic(0.3, bt - 0.3 * (bt - top), -0.3, top + 0.3 * (bt - top), 0,
                                   top - 0.06, 14).arr()
    els.append(_fill(_band(c, 0.05), 'secondary', rank=1))
  elif s['stem'] == 'column':
    ys = np.linspace(top - 0.06, bt + 0.02, 5)
    els.append(_fill(_lathe(list(zip(ys, [0.04, 0.09, 0.13, 0.08, 0.06])), 2), 'secondary', 1))
  else:
    for x in (-0.07, 0.07):
      els.append(_fill(_band([(x, bt + 0.02), (x, top - 0.06)], 0.035), 'secondary', rank=1))
  els.append(_fill(base, 'secondary', rank=1))
  sh = 0.5
  st = top - sh
  if s['shade'] == 'drum':
    shade = _lathe([(st, 0.4 * k), (top, 0.46 * k)], 0)
  elif s['shade'] == 'cone':
    shade = _lathe([(st, 0.15 * k), (top, 0.6 * k)], 0)
  elif s['shade'] == 'bell':
    shade = _lathe([(st, 0.18 * k), (st + 0.12, 0.24 * k), (top - 0.12, 0.42 * k),
                    (top, 0.62 * k)], 2)
  else:
    shade = np.vstack([_ellipse(0, top, 0.55 * k, sh, 20, math.pi, 2 * math.pi),
                       [(0.55 * k, top)]])
  els.append(_fill(shade, 'main', rank=0))
  els.append(_line([(-0.9 * _halfwidth(shade, top), top - 0.05),
                    (0.9 * _halfwidth(shade, top), top - 0.05)], 'dark', rank=3, minor=True,
                   width=0.012))
  if s['finial']:
    els.append(_fill(_ellipse(0, st - 0.06, 0.05, 0.06, 12), 'secondary', rank=2))
  return els


def _bottle(s):
  yb, k = 0.9, s['width']
  H = s['height'] * s['tall']
  ysh = yb - 0.68 * H
  w = 0.36 * k
  body = {'cylinder': [(ysh, w), (yb - 0.05, w), (yb, w - 0.04)],
          'round': [(ysh, 0.8 * w), (ysh + 0.3 * H, 1.15 * w), (yb - 0.05, 0.95 * w),
                    (yb, 0.8 * w)],
          'square': [(ysh, w * 1.05), (ysh + 0.01, w * 1.05), (yb, w * 1.05)],
          'hourglass': [(ysh, w), (ysh + 0.34 * H, 0.68 * w), (yb - 0.03, w), (yb, w - 0.03)],
          }[s['body']]
  yn = ysh - 0.16
  ytop = yn - s['neck']
  prof = [(ytop, 0.1), (yn, 0.11)] + body
  outline = _lathe(prof, 0 if s['body'] == 'square' else 2)
  if s['body'] == 'square':
    outline = _lathe([(ytop, 0.1), (yn, 0.11), (ysh, w * 1.05), (yb, w * 1.05)], 0)
  els = [_fill(outline, 'main', rank=0)]
  if s['label']:
    y0, y1 = ysh + 0.22 * H, ysh + 0.48 * H
    xs = [_halfwidth(outline, y) for y in (y0, y1)]
    els.append(_fill([(-xs[0], y0), (xs[0], y0), (xs[1], y1), (-xs[1], y1)], 'accent', rank=2))
  cap = s['cap']
  if cap == 'screw':
    els.append(_fill(_rect(-0.14, ytop - 0.16, 0.14, ytop + 0.03), 'secondary', rank=1))
    for x in (-0.07, 0.0, 0.07):
      els.append(_line([(x, ytop - 0.13), (x, ytop)], 'dark', rank=3, minor=True, width=0.01))
  elif cap == 'cork':
    els.append(_fill([(-0.085, ytop + 0.04), (0.085, ytop + 0.04), (0.12, ytop - 0.14),
                      (-0.12, ytop - 0.14)], 'secondary', rank=1))
  elif cap == 'flip':
    els.append(_fill(_Path(-0.15, ytop + 0.03).to(-0.15, ytop - 0.12).quad(0, ytop - 0.3, 0.15,
                                                                          ytop - 0.12).to(
        0.15, ytop + 0.03).arr(), 'secondary', rank=1))
    els.append(_line([(-0.15, ytop - 0.05), (0.15, ytop - 0.05)], 'dark', width=0.012))
  else:
    els.append(_fill(_rect(-0.13, ytop - 0.08, 0.13, ytop + 0.03), 'secondary', rank=1))
    els.append(_fill(_ellipse(0, ytop - 0.2, 0.09, 0.14, 16), 'secondary', rank=2))
  return els


def _bag(s):
  k = s['width']
  x, y0, y1 = 0.62 * k, -0.12, 0.72
  if s['body'] == 'rect':
    body = _Path(-x, y0).to(x, y0).to(x, y1 - 0.06).quad(x, y1, x - 0.06, y1).to(
        -x + 0.06, y1).quad(-x, y1, -x, y1 - 0.06).arr()
  elif s['body'] == 'trapezoid':
    body = _Path(-0.72 * x, y0).to(0.72 * x, y0).to(x, y1 - 0.05).quad(x, y1, x - 0.06, y1).to(
        -x + 0.06, y1).quad(-x, y1, -x, y1 - 0.05).arr()
  else:
    body = _Path(-x, y0).to(x, y0).to(x, y1 - 0.35).quad(x, y1, 0, y1).quad(-x, y1, -x,
                                                                           y1 - 0.35).arr()
  xt = _halfwidth(body, y0 + 0.001)
  els = []
  if s['handle'] == 'two':
    for hx in (-0.5 * xt, 0.5 * xt):
      c = _Path(hx - 0.14, y0 + 0.02).cubic(hx - 0.14, y0 - 0.38, hx + 0.14, y0 - 0.38, hx + 0.14,
                                             y0 + 0.02, 12).arr()
      els.append(_fill(_band(c, 0.05), 'secondary', rank=1))
  elif s['handle'] == 'shoulder':
    c = _Path(-xt + 0.05, y0 + 0.02).cubic(-xt + 0.05, y0 - 1.0, xt - 0.05, y0 - 1.0, xt - 0.05,
                                            y0 + 0.02, 16).arr()
    els.append(_fill(_band(c, 0.045), 'secondary', rank=1))
  else:
    c = _Path(-0.2, y0 + 0.02).cubic(-0.2, y0 - 0.32, 0.2, y0 - 0.32, 0.2, y0 + 0.02, 12).arr()
    els.append(_fill(_band(c, 0.07), 'secondary', rank=1))
  els.append(_fill(body, 'main', rank=0))
  if s['pocket']:
    els.append(_fill(_rect(-0.55 * xt, y1 - 0.36, 0.55 * xt, y1 - 0.08), 'main', rank=2))
  if s['flap']:
    fy = y0 + 0.42
    els.append(_fill(_Path(-xt - 0.02, y0 - 0.01).to(xt + 0.02, y0 - 0.01).to(
        _halfwidth(body, fy - 0.1) + 0.01, fy - 0.1).quad(0.3, fy + 0.08, 0, fy + 0.08).quad(
        -0.3, fy + 0.08, -_halfwidth(body, fy - 0.1) - 0.01, fy - 0.1).arr(), 'main', rank=1))
  ys = y0 + (0.45 if s['flap'] else 0.16)
  for bxx in {0: [], 1: [0.0], 2: [-0.28, 0.28]}[s['buckles']]:
    els.append(_fill(_rect(bxx - 0.06, ys - 0.05, bxx + 0.06, ys + 0.05), 'metal', rank=2))
  return els


def _hat(s):
  k = s['width']
  yb = 0.3
  hb = s['band_h']
  ch = s['crown_h'] * s['tall']
  w = 0.46 * k
  yt = yb - ch
  kind = s['crown']
  if kind == 'round':
    crown = np.vstack([[(-w, yb)], _ellipse(0, yb - 0.02, w, ch, 20, math.pi, 2 * math.pi),
                       [(w, yb)]])
  elif kind == 'flat':
    crown = _Path(-w, yb).to(-0.88 * w, yt + 0.05).quad(-0.85 * w, yt, -0.7 * w, yt).to(
        0.7 * w, yt).quad(0.85 * w, yt, 0.88 * w, yt + 0.05).to(w, yb).arr()
  elif kind == 'pinched':
    crown = _Path(-w, yb).quad(-w, yt, -0.45 * w, yt + 0.02).quad(0, yt - 0.02, 0, yt + 0.09).quad(
        0, yt - 0.02, 0.45 * w, yt + 0.02).quad(w, yt, w, yb).arr()
  else:
    crown = _Path(-0.9 * w, yb).to(-0.95 * w, yt - 0.15).to(0.95 * w, yt - 0.15).to(
        0.9 * w, yb).arr()
  els = []
  brim = s['brim']
  if brim == 'bill':
    els.append(_fill(_Path(-0.2 * w, yb - 0.02).to(w, yb - 0.06).quad(w + 0.55, yb - 0.02,
                                                                       w + 0.6, yb + 0.12).quad(
        w, yb + 0.14, -0.2 * w, yb + 0.06).arr(), 'main', rank=1))
  else:
    bw = (1.35 if brim == 'narrow' else 1.9) * w
    els.append(_fill(_ellipse(0, yb, bw, 0.12 if brim == 'narrow' else 0.17, 28), 'main', rank=1))
  els.append(_fill(crown, 'main', rank=0))
  xb = _halfwidth(crown, yb - 0.001) if kind != 'round' else w
  els.append(_fill([(-xb, yb), (xb, yb), (xb * 0.985, yb - hb), (-xb * 0.985, yb - hb)],
                   'secondary', rank=1))
  if s['button']:
    ytop = crown[:, 1].min()
    els.append(_fill(_ellipse(0, ytop - 0.02, 0.06, 0.04, 12), 'secondary', rank=2))
  return els


def _vase(s):
  k, yb = s['width'], 0.9
  H = 1.15 * s['tall']
  fh = s['foot_h']
  ybody = yb - fh
  ysh = ybody - H
  w = 0.44 * k
  body = {'ovoid': [(ysh, 0.5 * w), (ysh + 0.35 * H, w), (ybody - 0.05, 0.6 * w), (ybody, 0.5 * w)],
          'cylinder': [(ysh, 0.75 * w), (ysh + 0.05, 0.78 * w), (ybody - 0.03, 0.78 * w),
                       (ybody, 0.72 * w)],
          'amphora': [(ysh, 0.55 * w), (ysh + 0.2 * H, w), (ybody - 0.2 * H, 0.6 * w),
                      (ybody, 0.35 * w)],
          'flask': [(ysh + 0.1, 0.3 * w), (ysh + 0.55 * H, 1.05 * w), (ybody - 0.04, 0.8 * w),
                    (ybody, 0.6 * w)]}[s['body']]
  neck = s['neck']
  ylip = body[0][0] - neck
  lip = 0.24 * k if s['lip'] == 'flared' else 0.15 * k
  prof = [(ylip - 0.02, lip), (ylip + 0.06, 0.15 * k), (body[0][0] - 0.02, 0.15 * k)] + body
  outline = _lathe(prof, 2)
  els = []
  if s['handles']:
    for sign in (-1, 1):
      y1, y2 = ylip + 0.1, body[0][0] + 0.18 * H
      x1, x2 = sign * (0.15 * k - 0.02), sign * (_halfwidth(outline, y2) - 0.03)
      c = _Path(x1, y1).cubic(x1 + sign * 0.3, y1 - 0.05, x2 + sign * 0.2, y2 - 0.1, x2, y2, 12)
      els.append(_fill(_band(c.arr(), 0.055), 'main', rank=2))
  els.append(_fill(outline, 'main', rank=0))
  fw = _halfwidth(outline, ybody - 0.001)
  els.append(_fill([(-fw, ybody - 0.01), (fw, ybody - 0.01), (fw + 0.05, yb), (-fw - 0.05, yb)],
                   'secondary', rank=1))
  els.append(_fill(_ellipse(0, ylip - 0.02, lip * 0.95, 0.035, 16), 'dark', rank=1))
  return els


# ----------------------------------------------------------------------------- categories


@dataclasses.dataclass(frozen=True)
class _Category:
  levels: dict
  style: callable
  build: callable
  nouns: tuple
  parts: tuple              # (main part, secondary part, secondary is plural)
  materials: tuple
  secondary_materials: tuple
  shading: str              # profile | cylinder | flat
  adjectives: tuple


_SHOE_ADJ = ('comfy', 'stylish', 'casual', 'nice', 'everyday', 'classic', 'simple')
_CHAIR_ADJ = ('comfy', 'simple', 'nice', 'sturdy', 'modern', 'classic', 'cosy')
_DAILY_ADJ = ('nice', 'simple', 'classic', 'everyday', 'handy', 'pretty', 'plain-looking')


def _mk_shoe(cat, nouns, materials):
  return _Category(_SHOE_LEVELS[cat], lambda r: _shoe_style(r, cat), lambda s: _shoe(s, cat),
                   nouns, ('upper', 'sole', False), materials, ('rubber', 'leather', 'cork'),
                   'profile', _SHOE_ADJ)


def _mk_chair(cat, nouns, materials, secondary):
  return _Category(_CHAIR_LEVELS[cat], lambda r: _chair_style(r, cat), lambda s: _chair(s, cat),
                   nouns, ('seat', 'legs' if cat != 'office chair' else 'base', cat != 'office chair'),
                   materials, secondary, 'flat', _CHAIR_ADJ)


def _mk_daily(cat, build, nouns, parts, materials, secondary):
  return _Category(_DAILY_LEVELS[cat], lambda r: _daily_style(r, cat), build, nouns, parts,
                   materials, secondary, 'cylinder', _DAILY_ADJ)


_CATEGORIES = {
    'shoes': (
        _mk_shoe('sneaker', ('sneaker', 'trainer', 'shoe'), ('canvas', 'leather', 'mesh', 'suede')),
        _mk_shoe('boot', ('boot', 'shoe'), ('leather', 'suede', 'canvas', 'patent')),
        _mk_shoe('high heel', ('heel', 'shoe', 'pump'), ('leather', 'patent', 'suede')),
        _mk_shoe('loafer', ('loafer', 'shoe', 'slip-on'), ('leather', 'suede', 'patent', 'canvas')),
    ),
    'chairs': (
        _mk_chair('dining chair', ('chair', 'dining chair', 'seat'),
                  ('wood', 'fabric', 'leather', 'plastic'), ('wood', 'metal')),
        _mk_chair('armchair', ('armchair', 'chair', 'seat'), ('fabric', 'leather', 'velvet'),
                  ('wood', 'metal')),
        _mk_chair('office chair', ('office chair', 'chair', 'desk chair'),
                  ('fabric', 'leather', 'mesh', 'plastic'), ('plastic', 'metal')),
        _mk_chair('stool', ('stool', 'seat', 'bar stool'), ('wood', 'leather', 'plastic', 'velvet'),
                  ('wood', 'metal')),
    ),
    'daily': (
        _mk_daily('mug', _mug, ('mug', 'cup'), ('body', 'handle', False),
                  ('ceramic', 'glass', 'metal', 'plastic'), ('ceramic', 'metal', 'plastic')),
        _mk_daily('lamp', _lamp, ('lamp', 'table lamp', 'light'), ('shade', 'base', False),
                  ('fabric', 'paper', 'glass', 'metal'), ('metal', 'wood', 'ceramic')),
        _mk_daily('bottle', _bottle, ('bottle', 'flask'), ('bottle', 'cap', False),
                  ('glass', 'plastic', 'metal'), ('plastic', 'metal', 'cork')),
        _mk_daily('bag', _bag, ('bag', 'handbag', 'purse'), ('bag', 'handles', True),
                  ('leather', 'canvas', 'suede', 'fabric'), ('leather', 'fabric', 'canvas')),
        _mk_daily('hat', _hat, ('hat', 'cap'), ('hat', 'band', False),
                  ('felt', 'straw', 'wool', 'cotton'), ('fabric', 'leather', 'velvet')),
        _mk_daily('vase', _vase, ('vase', 'pot'), ('vase', 'foot', False),
                  ('ceramic', 'glass', 'metal'), ('ceramic', 'metal', 'wood')),
    ),
}


# ----------------------------------------------------------------------------- twins


def _pick(rng, seq, exclude=()):
  options = [v for v in seq if v not in exclude]
  return options[int(rng.integers(len(options)))]


def _base_structure(rng, cat):
  s = {k: v[int(rng.integers(len(v)))] for k, v in cat.levels.items()}
  s.update({k: float(v) for k, v in cat.style(rng).items()})
  return s


def _structural_variants(rng, cat, base, k_variants):
  varying = sorted(k for k, v in cat.levels.items() if len(v) > 1)
  total = int(np.prod([len(cat.levels[k]) for k in varying]))
  if k_variants > total:
    raise ValueError(f'structural_variants={k_variants} exceeds the {total} distinct structures '
                     f'of this category')
  variants, tries = [base], 0
  while len(variants) < k_variants:
    tries += 1
    cand = dict(base)
    n_change = min(len(varying), 1 + (rng.random() < 0.4) + tries // 40)
    for name in rng.choice(varying, size=n_change, replace=False):
      cand[name] = _pick(rng, cat.levels[name], exclude=(base[name],))
    if cand not in variants:
      variants.append(cand)
  return variants


def _base_appearance(rng, cat):
  main = _pick(rng, COLOURS)
  return dict(main_colour=main, secondary_colour=_pick(rng, COLOURS, (main,)),
              accent_colour=_pick(rng, COLOURS, (main,)),
              pattern=PATTERNS[int(rng.choice(4, p=[0.46, 0.18, 0.18, 0.18]))],
              pattern_colour=_pick(rng, COLOURS, (main,)),
              material=_pick(rng, cat.materials), secondary_material=_pick(rng, cat.secondary_materials))


def _appearance_variants(rng, cat, base, m_variants):
  others = [c for c in COLOURS if c != base['main_colour']]
  mains = [base['main_colour']] + [others[i] for i in rng.permutation(len(others))[:m_variants - 1]]
  variants = [base]
  for main in mains[1:]:
    a = dict(base, main_colour=main)
    if rng.random() < 0.4:
      a['pattern'] = _pick(rng, PATTERNS, (base['pattern'],))
    if rng.random() < 0.3:
      a['material'] = _pick(rng, cat.materials, (base['material'],)) if len(cat.materials) > 1 \
          else base['material']
    if rng.random() < 0.3 or a['secondary_colour'] == main:
      a['secondary_colour'] = _pick(rng, COLOURS, (main, base['secondary_colour']))
    if a['accent_colour'] == main:
      a['accent_colour'] = _pick(rng, COLOURS, (main,))
    if a['pattern_colour'] == main:
      a['pattern_colour'] = _pick(rng, COLOURS, (main, a['secondary_colour']))
    variants.append(a)
  return variants


# ----------------------------------------------------------------------------- rendering

_GRIDS = {}


def _grid(n):
  if n not in _GRIDS:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    _GRIDS[n] = (xx, yy)
  return _GRIDS[n]


class _Geometry:
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


def _pose(rng, geo, R):
  """Affine map object -> pixel coordinates: the object's box centred, small jitter."""
  lo, hi = geo.points.min(0), geo.points.max(0)
  centre = 0.5 * (lo + hi)
  extent = max(hi[0] - lo[0], hi[1] - lo[1])
  scale = R * 0.86 / extent * rng.uniform(0.86, 1.0)
  a = math.radians(rng.uniform(-5, 5))
  A = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
  b = R / 2 + rng.uniform(-0.04, 0.04, 2) * R - A @ centre
  return A, b


def _material_field(kind, amp, gloss, p, xx, yy, noise, u, v, shading):
  """Multiplicative texture and additive highlight fields of one material (p: texel size)."""
  if kind == 'weave':
    tex = 1 + amp * (((xx // p + yy // p) % 2) * 2 - 1)
  elif kind == 'noise':
    tex = 1 + amp * 2 * noise
  elif kind == 'mesh':
    tex = 1 - amp * (((xx % (2 * p)) < p) & ((yy % (2 * p)) < p))
  elif kind == 'grain':
    tex = 1 + amp * np.sin(yy * (6.0 / p) + 2.5 * np.sin(xx * (0.6 / p)) + 4 * noise)
  elif kind == 'straw':
    tex = 1 + amp * np.sign(np.sin((xx + yy) * (1.5 / p)) * np.sin((xx - yy) * (1.5 / p)))
  elif kind == 'brushed':
    tex = 1 + amp * np.sin(xx * (2.0 / p) + 3 * noise)
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


def _render_photo(rng, geo, app, cat, A, b, R):
  S = 2 * R  # 2x supersampling, averaged down: cheap anti-aliasing
  As, bs = 2 * A, 2 * b + 0.5
  els = geo.els
  fills = Image.new('L', (S, S), 0)
  lines = Image.new('L', (S, S), 0)
  df, dl = ImageDraw.Draw(fills), ImageDraw.Draw(lines)
  scale = float(np.sqrt(abs(np.linalg.det(As))))
  pix = geo.points @ As.T + bs
  flat = pix.ravel().tolist()
  start = 0
  for i, e in enumerate(els, 1):
    seg = flat[start:start + 2 * len(e.pts)]
    start += 2 * len(e.pts)
    if e.line:
      dl.line(seg + seg[:2] if e.closed else seg, fill=i,
              width=max(1, int(round(e.width * scale))), joint='curve')
    else:
      df.polygon(seg, fill=i)
  roles = ['bg'] + [e.role for e in els]

  # Everything about the object happens inside its (padded) box.
  x0, y0 = np.maximum(np.floor(pix.min(0)).astype(int) - 3, 0)
  x1, y1 = np.minimum(np.ceil(pix.max(0)).astype(int) + 4, S)
  pf = np.asarray(fills)[y0:y1, x0:x1]
  pl = np.asarray(lines)[y0:y1, x0:x1]
  pm = np.where(pl > 0, pl, pf)
  gx, gy = _grid(S)
  xx, yy = gx[y0:y1, x0:x1], gy[y0:y1, x0:x1]

  main = np.array(PALETTE[app['main_colour']], np.float32)
  role_colour = {'main': main, 'secondary': np.array(PALETTE[app['secondary_colour']], np.float32),
                 'accent': np.array(PALETTE[app['accent_colour']], np.float32),
                 'dark': main * 0.25 + 12, 'metal': np.array((178, 180, 186), np.float32),
                 'bg': np.zeros(3, np.float32)}
  role_mat = {'main': app['material'], 'secondary': app['secondary_material'],
              'accent': 'plastic', 'dark': 'rubber', 'metal': 'metal', 'bg': 'rubber'}
  colour = np.stack([role_colour[r] for r in roles])
  mat_names = sorted({role_mat[r] for r in roles})
  mat_idx = np.array([mat_names.index(role_mat[r]) for r in roles])

  # Background: a random two-colour gradient and a soft contact shadow.
  c0, c1 = rng.uniform(60, 250, (2, 3)).astype(np.float32)
  ang = rng.uniform(0, 2 * math.pi)
  ramp = np.linspace(-0.5, 0.5, S, dtype=np.float32)
  tt = ramp[None, :] * math.cos(ang) + ramp[:, None] * math.sin(ang) + 0.5
  img = c0 + (c1 - c0) * tt[..., None]
  ox0, ox1 = pix[:, 0].min(), pix[:, 0].max()
  oy1 = pix[:, 1].max()
  sy0, sy1 = int(max(0, oy1 - 0.15 * S)), int(min(S, oy1 + 0.15 * S))
  if sy1 > sy0:
    shadow = np.exp(-((gx[sy0:sy1] - 0.5 * (ox0 + ox1)) / (0.55 * (ox1 - ox0) + 1)) ** 2
                    - ((gy[sy0:sy1] - oy1) / (0.06 * S)) ** 2)
    img[sy0:sy1] *= (1 - 0.45 * shadow)[..., None]

  u = (xx - ox0) / max(1.0, ox1 - ox0)
  v = (yy - pix[:, 1].min()) / max(1.0, oy1 - pix[:, 1].min())
  if cat.shading == 'cylinder':
    light = 0.72 + 0.4 * np.cos((u - 0.38) * 2.2)
  else:
    light = 1.12 - 0.3 * v - 0.1 * u
  noise = rng.random(xx.shape, dtype=np.float32) - 0.5
  texel = max(2.0, S / 48)
  fields = [_material_field(MATERIALS[n][3], MATERIALS[n][4], MATERIALS[n][2], texel, xx, yy,
                            noise, u, v, cat.shading) for n in mat_names]
  mi = mat_idx[pm]
  tex = _select(mi, [f[0] for f in fields])
  hl = _select(mi, [f[1] for f in fields])

  base = colour[pm]
  if app['pattern'] != 'plain':
    p = max(4.0, max(ox1 - ox0, oy1 - pix[:, 1].min()) / 11)
    if app['pattern'] == 'striped':
      pat = ((xx * 0.5 + yy * 0.87) // (p / 2)) % 2 == 0
    elif app['pattern'] == 'dotted':
      pat = ((xx % p) - p / 2) ** 2 + ((yy % p) - p / 2) ** 2 < (0.24 * p) ** 2
    else:
      pat = ((xx // (p * 0.7)) + (yy // (p * 0.7))) % 2 == 0
    is_main = np.array([r == 'main' for r in roles])[pm]
    base = np.where((pat & is_main)[..., None],
                    np.array(PALETTE[app['pattern_colour']], np.float32), base)
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


def _render_sketch(rng, geo, A, b, R, drawer_pose=None):
  """One simulated drawer's contour sketch as a stroke-order map (R, R) uint8.

  `drawer_pose`, a list, receives the drawer's own rotation (radians), scale and shift (pixels)
  of the photo's pose, which is what a perfect reader of the sketch could recover (ceiling.py).
  """
  px = R / 64.0
  n_el = len(geo.els)
  wobble = rng.uniform(0.1, 0.5) * px
  spacing = rng.uniform(1.5, 4.0) * px
  omit = rng.uniform(0.2, 0.8)
  width = int(rng.integers(1, 3)) + R // 160
  split = rng.uniform(0.0, 0.5)
  a = math.radians(rng.uniform(-4, 4))
  sc = rng.uniform(0.95, 1.04)
  D = sc * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
  centre = np.array([R / 2, R / 2])
  shift = rng.uniform(-0.03, 0.03, 2) * R
  if drawer_pose is not None:
    drawer_pose.append(dict(rotation=a, scale=sc, shift=shift))
  M, t = D @ A, D @ (b - centre) + centre + shift
  scale = math.sqrt(abs(np.linalg.det(M)))
  r_omit, r_order, r_over, r_split, r_cut = rng.random((5, n_el))
  phase = rng.uniform(0, 2 * math.pi, (2, n_el))

  # Outline first, then parts, then details; drawers shuffle within a group.
  keep = ~(geo.minor & (r_omit < omit))
  order = np.lexsort((np.where(geo.rank == 0, 0.0, r_order), geo.rank))
  order = order[keep[order]]
  total = geo.total[order]
  closed = geo.closed[order]
  end = total * np.where(closed, 1 + (r_over[order] * 0.08 - 0.02), 1.0)
  n = np.maximum(2, (end * scale / spacing).astype(int) + 1)
  starts = np.concatenate([[0], np.cumsum(n)[:-1]])
  local = np.arange(n.sum()) - np.repeat(starts, n)
  frac = local / np.repeat(n - 1, n)
  s = np.repeat(geo.offset[order], n) + (frac * np.repeat(end, n)) % np.repeat(total, n)
  pts = np.stack([np.interp(s, geo.cum, geo.path[:, 0]), np.interp(s, geo.cum, geo.path[:, 1])], 1)
  pts = pts @ M.T + t
  # Smooth wobble along each stroke's normal plus a little tremor.
  length = np.repeat(end * scale, n)
  cyc = np.maximum(1.0, length / (30 * px))
  off = wobble * (np.sin(np.pi * cyc * frac + np.repeat(phase[0, order], n))
                  + 0.5 * np.sin(2 * np.pi * cyc * frac + np.repeat(phase[1, order], n)))
  d = np.empty_like(pts)
  d[:-1] = pts[1:] - pts[:-1]
  last = starts + n - 1
  d[last] = d[last - 1]
  d /= np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9
  pts += np.stack([-d[:, 1], d[:, 0]], 1) * off[:, None]
  pts += rng.normal(0, 0.15 * wobble, pts.shape)
  flat = pts.ravel().tolist()

  img = Image.new('L', (R, R), 0)
  draw = ImageDraw.Draw(img)
  joint = 'curve' if width > 1 else None
  k = 0
  for j in range(len(order)):
    a0, m = 2 * starts[j], 2 * n[j]
    if closed[j] and n[j] > 8 and r_split[order[j]] < split:
      cut = 2 * (n[j] // 3 + int(r_cut[order[j]] * (n[j] // 3)))
      pieces = [flat[a0:a0 + cut + 2], flat[a0 + cut:a0 + m]]
    else:
      pieces = [flat[a0:a0 + m]]
    for piece in pieces:
      k += 1
      draw.line(piece, fill=min(k, 255), width=width, joint=joint)
  return np.asarray(img)


# ----------------------------------------------------------------------------- text


def _a(word):
  return ('an ' if word[0] in 'aeiou' else 'a ') + word


def _text_choices(rng, cat, app):
  """The random choices behind one description (the order of draws is the generator's)."""
  noun = _pick(rng, cat.nouns)
  adjective = _pick(rng, cat.adjectives) if rng.random() < 0.4 else ''
  with_secondary = bool(rng.random() < 0.5)
  with_material = bool(rng.random() < 0.55)
  with_pattern = bool(app['pattern'] != 'plain' and rng.random() < 0.75)
  return dict(noun=noun, adjective=adjective, with_secondary=with_secondary,
              with_material=with_material, with_pattern=with_pattern,
              form=int(rng.integers(6)))


def text_from_choices(choices, cat, app) -> str:
  """The description that `choices` (_text_choices) give for category `cat` and appearance
  `app`: a pure function, so ceiling.py can ask which other photos the same choices describe
  with the same words."""
  main, sec = app['main_colour'], app['secondary_colour']
  mat_adj, mat_noun = MATERIALS[app['material']][:2]
  part, sec_part, plural = cat.parts
  pc, pattern = app['pattern_colour'], app['pattern']
  noun = choices['noun']
  adj = choices['adjective'] + ' ' if choices['adjective'] else ''
  with_sec, with_mat = choices['with_secondary'], choices['with_material']
  with_pat, form = choices['with_pattern'], choices['form']
  sec_phrase = (f' with {sec} {sec_part}' if plural else f' with {_a(sec)} {sec_part}') \
      if with_sec else ''
  pat_phrase = {'striped': (f'with {pc} stripes', 'striped'),
                'dotted': (f'with {pc} dots', 'polka-dot'),
                'checked': (f'with a {pc} check pattern', 'checked')}.get(pattern, ('', ''))
  if form == 0:
    words = adj + main + ' ' + (mat_adj + ' ' if with_mat else '') + noun
    t = f'{_a(words).capitalize()}{sec_phrase}'
    t += f', {pat_phrase[0]}.' if with_pat else '.'
  elif form == 1:
    t = f'{_a(adj + noun).capitalize()} in {main}'
    t += f', made of {mat_noun}' if with_mat else ''
    t += f'{sec_phrase}.'
    t += f' It is {pat_phrase[1]}.' if with_pat else ''
  elif form == 2:
    t = f'The {part} is {main}'
    t += (f' and the {sec_part} {"are" if plural else "is"} {sec}.') if with_sec else '.'
    t += f' {_a(mat_adj).capitalize()} {noun}.' if with_mat else f' It looks like {_a(adj + noun)}.'
    t += f' The {part} has a {pattern} pattern in {pc}.' if with_pat else ''
  elif form == 3:
    t = f'Looking for {_a(main)} {noun}'
    t += f' {pat_phrase[0]}' if with_pat else ''
    t += f'{sec_phrase}.'
    t += f' The {part} is {mat_noun}.' if with_mat else ''
  elif form == 4:
    t = f'{main} {(pat_phrase[1] + " ") if with_pat else ""}{(mat_adj + " ") if with_mat else ""}{noun}'
    t += f', {sec} {sec_part}' if with_sec else ''
  else:
    t = f'{_a(adj + noun).capitalize()}, mostly {main}.'
    t += f' Its {sec_part} {"are" if plural else "is"} {sec}.' if with_sec else ''
    t += f' Made of {mat_noun}.' if with_mat else ''
    t += f' It is {pat_phrase[1]} {pat_phrase[0]}.'.replace('  ', ' ') if with_pat else ''
  return ' '.join(t.split())


def _texts(rng, n, cat, app, choices_out=None):
  """n descriptions; `choices_out`, a list, receives the choices behind each."""
  texts = []
  for _ in range(n):
    choices = _text_choices(rng, cat, app)
    if choices_out is not None:
      choices_out.append(choices)
    texts.append(text_from_choices(choices, cat, app))
  return texts


# ----------------------------------------------------------------------------- generation


def generate_with_params(config_name: str, split: str,
                         spec: SynthSpec) -> Iterator[tuple[dict, dict]]:
  """Yields (record, params) for every instance of `split`, family by family.

  params: 'structure' and 'appearance' dicts, 'structural_variant' k, 'appearance_variant' m;
  the ground truth behind the records for ceiling.py: 'category' (the category model), 'pose'
  (A, b) of the photo, 'drawer_poses' of each sketch and 'text_choices' of each description.
  """
  _config_index(config_name)
  _check_spec(spec)
  for f in range(spec.families(split)):
    yield from family_with_params(config_name, split, spec, f)


def family_with_params(config_name: str, split: str, spec: SynthSpec,
                       f: int) -> Iterator[tuple[dict, dict]]:
  """(record, params) of the K*M instances of family number `f` (0-based) within `split`."""
  ci, si = _config_index(config_name), _split_index(split)
  _check_spec(spec)
  if not 0 <= f < spec.families(split):
    raise ValueError(f'family {f} out of range: split {split!r} has {spec.families(split)} '
                     'families')
  names = CONFIGS[config_name]
  K, M, R = spec.structural_variants, spec.appearance_variants, spec.resolution
  rng = np.random.default_rng((spec.seed, ci, si, f))
  c = f % len(names)  # balanced categories
  cat = _CATEGORIES[config_name][c]
  structures = _structural_variants(rng, cat, _base_structure(rng, cat), K)
  appearances = _appearance_variants(rng, cat, _base_appearance(rng, cat), M)
  family = _family_offset(split, spec) + f
  for k, structure in enumerate(structures):
    geo = _Geometry(cat.build(structure))
    for m, app in enumerate(appearances):
      irng = np.random.default_rng((spec.seed, ci, si, f, k, m))
      A, b = _pose(irng, geo, R)
      image = _render_photo(irng, geo, app, cat, A, b, R)
      sketches = np.zeros((spec.sketches_per_instance, R, R, 1), np.uint8)
      drawer_poses, text_choices = [], []
      for j in range(spec.sketches_per_instance):
        sketches[j, ..., 0] = _render_sketch(irng, geo, A, b, R, drawer_poses)
      texts = _texts(irng, spec.texts_per_instance, cat, app, text_choices)
      record = dict(image=image, sketches=sketches, texts=texts, category=c, family=family,
                    instance=family * K * M + k * M + m,
                    photo_id=f'{config_name}-{split}-f{family:05d}-s{k}-a{m}')
      params = dict(structure=dict(structure), appearance=dict(app), structural_variant=k,
                    appearance_variant=m, category=cat, pose=(A, b), drawer_poses=drawer_poses,
                    text_choices=text_choices)
      yield record, params


def generate(config_name: str, split: str, spec: SynthSpec) -> Iterator[dict]:
  """Yields the records (schema.py keys) of `split`, deterministic from `spec`."""
  for record, _ in generate_with_params(config_name, split, spec):
    yield record
