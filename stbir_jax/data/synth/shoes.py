"""The parametric shoe designs: sneaker, boot, high heel, loafer (a side view, toe to the
right)."""

import numpy as np

from stbir_jax.data.synth.geometry import Path, band, ellipse, fill, line, rect

LEVELS = {
    'sneaker': {
        'toe': ('round', 'square'), 'heel': (0.0,), 'heel_type': ('block',),
        'collar': (0.42, 0.54, 0.66), 'sole': (0.08, 0.14, 0.2), 'laces': (3, 4, 5, 6),
        'strap': (0, 1), 'toe_cap': (0, 1), 'tassel': (0,),
    },
    'boot': {
        'toe': ('round', 'square', 'pointed'), 'heel': (0.04, 0.12, 0.2), 'heel_type': ('block',),
        'collar': (0.8, 1.0, 1.2), 'sole': (0.07, 0.11, 0.16), 'laces': (0, 4, 6), 'strap': (0, 1),
        'toe_cap': (0, 1), 'tassel': (0,),
    },
    'high heel': {
        'toe': ('pointed', 'round'), 'heel': (0.36, 0.5, 0.64),
        'heel_type': ('stiletto', 'block', 'wedge'), 'collar': (0.2, 0.32), 'sole': (0.03, 0.09),
        'laces': (0,), 'strap': (0, 1), 'toe_cap': (0,), 'tassel': (0,),
    },
    'loafer': {
        'toe': ('round', 'square', 'pointed'), 'heel': (0.04, 0.09), 'heel_type': ('block',),
        'collar': (0.25, 0.34), 'sole': (0.06, 0.1), 'laces': (0,), 'strap': (0, 1),
        'toe_cap': (0, 1), 'tassel': (0, 1),
    },
}


def style(rng, name):
  throat = {'sneaker': (0.44, 0.52), 'boot': (0.34, 0.42), 'high heel': (0.0, 0.0),
            'loafer': (0.32, 0.38)}[name]
  return {'length': rng.uniform(0.84, 0.92), 'toe_h': rng.uniform(0.22, 0.28),
          'throat_x': rng.uniform(-0.3, -0.08), 'throat_h': rng.uniform(*throat),
          'lean': rng.uniform(-0.02, 0.06), 'vamp_curve': rng.uniform(-0.1, -0.02)}


def build(shape, name):
  ground, half_len, sole_t, heel_h = 0.55, shape['length'], shape['sole'], shape['heel']
  th, collar = shape['toe_h'], shape['collar']
  sole_top = ground - sole_t   # the foot bed's height under the forefoot
  heel_top = sole_top - heel_h  # and under the heel
  x0, x1 = -half_len, half_len
  xb = 0.25 * half_len
  # Foot bed (top of the sole) from toe to heel: flat forefoot, raised by the heel at the back.
  bed = Path(x1, sole_top).to(xb, sole_top).cubic(xb - 0.3, sole_top, x0 + 0.55, heel_top,
                                                  x0 + 0.25, heel_top, 10).to(x0, heel_top).arr()
  bx, by = bed[::-1, 0], bed[::-1, 1]

  def bed_y(x):
    return float(np.interp(x, bx, by))

  els = []
  # Upper: heel counter up to the collar, (shaft), throat, vamp, toe, back along the bed.
  back = (x0 - shape['lean'], heel_top - collar)
  up = Path(x0, heel_top).quad(x0 - shape['lean'] - 0.05, heel_top - 0.5 * collar, *back)
  toe_top = (x1 - 0.38, sole_top - th)
  boot = collar >= 0.5
  if boot:
    front = (x0 - shape['lean'] + 0.44, back[1] + 0.02)
    throat = (front[0] + 0.1, sole_top - th - shape['throat_h'])
    up.to(*front).quad(front[0], throat[1] - 0.05, *throat)
  elif name == 'high heel':
    throat = (0.15 * half_len, sole_top - th - 0.03)
    up.quad(0.5 * (back[0] + throat[0]), back[1] + 0.45 * collar + 0.5 * heel_h, *throat, n=8)
  else:
    throat = (shape['throat_x'] * half_len, bed_y(shape['throat_x'] * half_len) - shape['throat_h'])
    up.quad(0.5 * (back[0] + throat[0]), back[1] + 0.3 * collar, *throat)
  n_up = len(up.points)
  mid = (0.5 * (throat[0] + toe_top[0]), 0.5 * (throat[1] + toe_top[1]) + shape['vamp_curve'])
  up.quad(mid[0], mid[1], *toe_top, n=8)
  vamp = np.asarray(up.points[n_up - 1:])
  if shape['toe'] == 'round':
    up.quad(x1 + 0.04, sole_top - th, x1 + 0.04, sole_top - 0.35 * th)
    up.quad(x1 + 0.04, sole_top, x1, sole_top)
  elif shape['toe'] == 'pointed':
    up.quad(x1 - 0.08, sole_top - 0.75 * th, x1 + 0.1, sole_top - 0.02).to(x1, sole_top)
  else:
    up.to(x1 - 0.08, sole_top - th).quad(x1 + 0.02, sole_top - th, x1 + 0.02, sole_top - 0.7 * th)
    up.to(x1 + 0.02, sole_top)
  up.extend(bed[1:-1])
  upper = up.arr()

  laced = shape['laces'] > 0
  if laced:  # the tongue shows above the lacing, behind the upper
    tx, ty = throat
    els.append(fill([(tx - 0.02, ty + 0.06), (tx - 0.07, ty - 0.1), (tx + 0.05, ty - 0.13),
                     (tx + 0.14, ty + 0.04)], 'main', rank=1))
  els.append(fill(upper, 'main', rank=0))
  # Sole: a band under the bed with a rounded toe end.
  sole = np.vstack([[(x1 + 0.04, ground - 0.55 * sole_t)], bed, (bed + [0, sole_t])[::-1]])
  els.append(fill(sole, 'secondary', rank=1))
  if heel_h > 0.001:
    def sole_y(x):
      return bed_y(x) + sole_t
    kind = shape['heel_type']
    if kind == 'wedge':
      xs = np.linspace(x0 + 0.01, xb, 8)
      heel = np.vstack([np.stack([xs, [sole_y(x) for x in xs]], 1),
                        [(xb, ground), (x0 + 0.03, ground)]])
    elif kind == 'stiletto':
      heel = Path(x0 + 0.02, sole_y(x0 + 0.02))
      heel.quad(x0 + 0.1, ground - 0.45 * heel_h, x0 + 0.15, ground).to(x0 + 0.2, ground)
      heel = heel.quad(x0 + 0.19, ground - 0.5 * heel_h, x0 + 0.27, sole_y(x0 + 0.27)).arr()
    else:
      heel = np.array([(x0 + 0.01, sole_y(x0)), (x0 + 0.3, sole_y(x0 + 0.3)),
                       (x0 + 0.27, ground), (x0 + 0.05, ground)])
    els.append(fill(heel, 'secondary', rank=1))
  # Structural details.
  if laced:
    if boot:
      pts = np.linspace(throat, front, shape['laces'] // 2 + 1)
      pts = np.vstack([pts, vamp[np.linspace(1, len(vamp) // 2, shape['laces'] - len(pts) + 1
                                              ).astype(int)[1:]]])
    else:
      pts = vamp[np.linspace(1, int(len(vamp) * 0.6), shape['laces']).astype(int)]
    for (lx, ly) in pts:
      els.append(line([(lx - 0.05, ly + 0.055), (lx + 0.05, ly - 0.04)], 'accent', width=0.03))
  if shape['strap']:
    if name == 'sneaker':
      vx, vy = vamp[int(len(vamp) * 0.75)]
      els.append(fill(band([(vx + 0.02, vy - 0.01), (vx - 0.12, bed_y(vx) - 0.06)], 0.1),
                      'accent', rank=2))
    elif boot:
      y = back[1] + 0.35 * collar
      els.append(fill(band([(x0 - shape['lean'] - 0.02, y + 0.02), (front[0] + 0.04, y - 0.03)],
                           0.07), 'accent', rank=2))
      els.append(fill(rect(front[0] - 0.06, y - 0.07, front[0] + 0.03, y + 0.01), 'metal', 2))
    elif name == 'high heel':
      bxx, byy = back
      els.append(fill(band(Path(bxx - 0.01, byy + 0.02).quad(bxx + 0.2, byy - 0.06, bxx + 0.42,
                                                             byy + 0.05).arr(), 0.045),
                      'accent', rank=2))
    else:  # penny strap across the saddle
      sx = throat[0] + 0.05
      saddle = bed_y(sx) - shape['throat_h']
      pts = Path(sx - 0.08, saddle + 0.08).quad(sx + 0.12, saddle + 0.06, sx + 0.3, saddle + 0.17)
      els.append(fill(band(pts.arr(), 0.06), 'accent', rank=2))
  if shape['toe_cap']:
    els.append(line(Path(x1 - 0.34, sole_top - 0.005).quad(x1 - 0.4, sole_top - 0.8 * th,
                                                           x1 - 0.24, sole_top - th - 0.01).arr(),
                    'dark',
                    width=0.015))
  if shape['tassel']:
    tx, ty = throat[0] + 0.14, throat[1] + 0.06
    els.append(line([(tx - 0.04, ty - 0.02), (tx, ty + 0.04)], 'accent', width=0.02))
    els.append(fill(ellipse(tx + 0.01, ty + 0.09, 0.035, 0.06, 12), 'accent', rank=2))
  # Minor details: stitching along the sole and the collar.
  els.append(line(bed[1:-1] + [0, 0.5 * sole_t], 'dark', rank=3, minor=True, width=0.01))
  return els

