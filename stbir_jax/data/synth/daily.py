"""The parametric designs of daily objects: mug, lamp, bottle, bag, hat, vase (front views,
mostly lathe outlines)."""

import math

import numpy as np

from stbir_jax.data.synth.geometry import (
  Path,
  band,
  chaikin,
  ellipse,
  fill,
  halfwidth,
  lathe,
  line,
  rect,
)

LEVELS = {
    'mug': {
        'taper': ('straight', 'flared', 'tapered', 'barrel'), 'height': (0.8, 1.05),
        'handle': ('round', 'square', 'D', 'ear'), 'rim': (0, 1), 'foot': (0, 1),
    },
    'lamp': {
        'shade': ('drum', 'cone', 'bell', 'dome'),
        'stem': ('straight', 'curved', 'column', 'double'), 'base': ('disc', 'dome', 'square'),
        'stem_h': (0.45, 0.7), 'finial': (0, 1),
    },
    'bottle': {
        'body': ('cylinder', 'round', 'square', 'hourglass'), 'neck': (0.12, 0.26, 0.4),
        'cap': ('screw', 'cork', 'flip', 'dropper'), 'label': (0, 1), 'height': (1.0, 1.25),
    },
    'bag': {
        'body': ('rect', 'trapezoid', 'rounded'), 'handle': ('two', 'shoulder', 'loop'),
        'flap': (0, 1), 'pocket': (0, 1), 'buckles': (0, 1, 2),
    },
    'hat': {
        'crown': ('round', 'flat', 'pinched', 'tall'), 'brim': ('narrow', 'wide', 'bill'),
        'crown_h': (0.45, 0.65), 'button': (0, 1), 'band_h': (0.07, 0.14),
    },
    'vase': {
        'body': ('ovoid', 'cylinder', 'amphora', 'flask'), 'neck': (0.1, 0.25, 0.4),
        'lip': ('straight', 'flared'), 'handles': (0, 2), 'foot_h': (0.04, 0.12),
    },
}


def style(rng, name):
  return {'width': rng.uniform(0.9, 1.1), 'tall': rng.uniform(0.92, 1.08),
          'skew': rng.uniform(-0.04, 0.04)}


def mug(shape):
  height, scale = shape['height'] * shape['tall'], shape['width']
  yb = 0.5
  yt = yb - height
  wt, wm, wb = {'straight': (0.42, 0.42, 0.42), 'flared': (0.5, 0.44, 0.35),
                'tapered': (0.35, 0.42, 0.48), 'barrel': (0.37, 0.5, 0.37)}[shape['taper']]
  body = lathe([(yt, wt * scale), (yt + 0.5 * height, wm * scale), (yb - 0.05, wb * scale),
                (yb, wb * scale - 0.05)], 2)
  y1, y2 = yt + 0.18 * height, yb - 0.22 * height
  x1, x2 = halfwidth(body, y1) - 0.03, halfwidth(body, y2) - 0.03
  kind = shape['handle']
  if kind == 'round':
    handle = Path(x1, y1).cubic(x1 + 0.42, y1 - 0.08, x2 + 0.42, y2 + 0.08, x2, y2, 12).arr()
  elif kind == 'square':
    handle = chaikin([(x1, y1), (x1 + 0.3, y1), (x1 + 0.3, y2), (x2, y2)], 1)
  elif kind == 'D':
    handle = chaikin([(x1, y1), (x1 + 0.22, y1), (x1 + 0.32, 0.5 * (y1 + y2)), (x2 + 0.18, y2),
                      (x2, y2)], 2)
  else:
    y2 = yt + 0.5 * height
    x2 = halfwidth(body, y2) - 0.03
    handle = Path(x1, y1).cubic(x1 + 0.32, y1 - 0.1, x2 + 0.32, y2 + 0.1, x2, y2, 10).arr()
  els = [fill(band(handle, 0.09), 'secondary', rank=1), fill(body, 'main', rank=0)]
  if shape['rim']:
    els.append(
        fill(rect(-wt * scale - 0.03, yt - 0.01, wt * scale + 0.03, yt + 0.07), 'main', rank=2))
  els.append(
      fill(ellipse(0, yt, wt * scale * 0.98 + 0.03 * shape['rim'], 0.07, 20), 'dark', rank=1))
  if shape['foot']:
    els.append(
        fill(rect(-wb * scale * 0.8, yb - 0.02, wb * scale * 0.8, yb + 0.07), 'main', rank=2))
  return els


def lamp(shape):
  yb = 0.9
  scale = shape['width']
  els = []
  if shape['base'] == 'disc':
    base = lathe([(yb - 0.1, 0.3 * scale), (yb - 0.04, 0.38 * scale), (yb, 0.4 * scale)], 1)
    bt = yb - 0.1
  elif shape['base'] == 'dome':
    base, bt = lathe([(yb - 0.2, 0.06), (yb - 0.14, 0.26 * scale), (yb, 0.36 * scale)], 2), yb - 0.2
  else:
    base, bt = rect(-0.3 * scale, yb - 0.16, 0.3 * scale, yb), yb - 0.16
  top = bt - shape['stem_h'] * shape['tall']
  if shape['stem'] == 'straight':
    els.append(fill(band([(0, bt + 0.02), (0, top - 0.06)], 0.05), 'secondary', rank=1))
  elif shape['stem'] == 'curved':
    stem = Path(0, bt + 0.02).cubic(0.3, bt - 0.3 * (bt - top), -0.3, top + 0.3 * (bt - top), 0,
                                    top - 0.06, 14).arr()
    els.append(fill(band(stem, 0.05), 'secondary', rank=1))
  elif shape['stem'] == 'column':
    ys = np.linspace(top - 0.06, bt + 0.02, 5)
    widths = [0.04, 0.09, 0.13, 0.08, 0.06]
    els.append(fill(lathe(list(zip(ys, widths, strict=True)), 2), 'secondary', 1))
  else:
    for x in (-0.07, 0.07):
      els.append(fill(band([(x, bt + 0.02), (x, top - 0.06)], 0.035), 'secondary', rank=1))
  els.append(fill(base, 'secondary', rank=1))
  sh = 0.5
  st = top - sh
  if shape['shade'] == 'drum':
    shade = lathe([(st, 0.4 * scale), (top, 0.46 * scale)], 0)
  elif shape['shade'] == 'cone':
    shade = lathe([(st, 0.15 * scale), (top, 0.6 * scale)], 0)
  elif shape['shade'] == 'bell':
    shade = lathe([(st, 0.18 * scale), (st + 0.12, 0.24 * scale), (top - 0.12, 0.42 * scale),
                   (top, 0.62 * scale)], 2)
  else:
    shade = np.vstack([ellipse(0, top, 0.55 * scale, sh, 20, math.pi, 2 * math.pi),
                       [(0.55 * scale, top)]])
  els.append(fill(shade, 'main', rank=0))
  els.append(line([(-0.9 * halfwidth(shade, top), top - 0.05),
                   (0.9 * halfwidth(shade, top), top - 0.05)], 'dark', rank=3, minor=True,
                  width=0.012))
  if shape['finial']:
    els.append(fill(ellipse(0, st - 0.06, 0.05, 0.06, 12), 'secondary', rank=2))
  return els


def bottle(shape):
  yb, scale = 0.9, shape['width']
  height = shape['height'] * shape['tall']
  ysh = yb - 0.68 * height
  half_w = 0.36 * scale
  body = {
      'cylinder': [(ysh, half_w), (yb - 0.05, half_w), (yb, half_w - 0.04)],
      'round': [(ysh, 0.8 * half_w), (ysh + 0.3 * height, 1.15 * half_w),
                (yb - 0.05, 0.95 * half_w), (yb, 0.8 * half_w)],
      'square': [(ysh, half_w * 1.05), (ysh + 0.01, half_w * 1.05), (yb, half_w * 1.05)],
      'hourglass': [(ysh, half_w), (ysh + 0.34 * height, 0.68 * half_w), (yb - 0.03, half_w),
                    (yb, half_w - 0.03)],
  }[shape['body']]
  yn = ysh - 0.16
  ytop = yn - shape['neck']
  prof = [(ytop, 0.1), (yn, 0.11)] + body
  outline = lathe(prof, 0 if shape['body'] == 'square' else 2)
  if shape['body'] == 'square':
    outline = lathe([(ytop, 0.1), (yn, 0.11), (ysh, half_w * 1.05), (yb, half_w * 1.05)], 0)
  els = [fill(outline, 'main', rank=0)]
  if shape['label']:
    y0, y1 = ysh + 0.22 * height, ysh + 0.48 * height
    xs = [halfwidth(outline, y) for y in (y0, y1)]
    els.append(fill([(-xs[0], y0), (xs[0], y0), (xs[1], y1), (-xs[1], y1)], 'accent', rank=2))
  cap = shape['cap']
  if cap == 'screw':
    els.append(fill(rect(-0.14, ytop - 0.16, 0.14, ytop + 0.03), 'secondary', rank=1))
    for x in (-0.07, 0.0, 0.07):
      els.append(line([(x, ytop - 0.13), (x, ytop)], 'dark', rank=3, minor=True, width=0.01))
  elif cap == 'cork':
    els.append(fill([(-0.085, ytop + 0.04), (0.085, ytop + 0.04), (0.12, ytop - 0.14),
                     (-0.12, ytop - 0.14)], 'secondary', rank=1))
  elif cap == 'flip':
    lid = Path(-0.15, ytop + 0.03).to(-0.15, ytop - 0.12).quad(0, ytop - 0.3, 0.15, ytop - 0.12)
    els.append(fill(lid.to(0.15, ytop + 0.03).arr(), 'secondary', rank=1))
    els.append(line([(-0.15, ytop - 0.05), (0.15, ytop - 0.05)], 'dark', width=0.012))
  else:
    els.append(fill(rect(-0.13, ytop - 0.08, 0.13, ytop + 0.03), 'secondary', rank=1))
    els.append(fill(ellipse(0, ytop - 0.2, 0.09, 0.14, 16), 'secondary', rank=2))
  return els


def bag(shape):
  scale = shape['width']
  half_w, y0, y1 = 0.62 * scale, -0.12, 0.72
  if shape['body'] == 'rect':
    body = Path(-half_w, y0).to(half_w, y0).to(half_w, y1 - 0.06)
    body.quad(half_w, y1, half_w - 0.06, y1).to(-half_w + 0.06, y1)
    body = body.quad(-half_w, y1, -half_w, y1 - 0.06).arr()
  elif shape['body'] == 'trapezoid':
    body = Path(-0.72 * half_w, y0).to(0.72 * half_w, y0).to(half_w, y1 - 0.05)
    body.quad(half_w, y1, half_w - 0.06, y1).to(-half_w + 0.06, y1)
    body = body.quad(-half_w, y1, -half_w, y1 - 0.05).arr()
  else:
    body = Path(-half_w, y0).to(half_w, y0).to(half_w, y1 - 0.35).quad(half_w, y1, 0, y1)
    body = body.quad(-half_w, y1, -half_w, y1 - 0.35).arr()
  xt = halfwidth(body, y0 + 0.001)
  els = []
  if shape['handle'] == 'two':
    for hx in (-0.5 * xt, 0.5 * xt):
      handle = Path(hx - 0.14, y0 + 0.02).cubic(hx - 0.14, y0 - 0.38, hx + 0.14, y0 - 0.38,
                                                hx + 0.14, y0 + 0.02, 12).arr()
      els.append(fill(band(handle, 0.05), 'secondary', rank=1))
  elif shape['handle'] == 'shoulder':
    handle = Path(-xt + 0.05, y0 + 0.02).cubic(-xt + 0.05, y0 - 1.0, xt - 0.05, y0 - 1.0, xt - 0.05,
                                               y0 + 0.02, 16).arr()
    els.append(fill(band(handle, 0.045), 'secondary', rank=1))
  else:
    handle = Path(-0.2, y0 + 0.02).cubic(-0.2, y0 - 0.32, 0.2, y0 - 0.32, 0.2, y0 + 0.02, 12).arr()
    els.append(fill(band(handle, 0.07), 'secondary', rank=1))
  els.append(fill(body, 'main', rank=0))
  if shape['pocket']:
    els.append(fill(rect(-0.55 * xt, y1 - 0.36, 0.55 * xt, y1 - 0.08), 'main', rank=2))
  if shape['flap']:
    fy = y0 + 0.42
    flap = Path(-xt - 0.02, y0 - 0.01).to(xt + 0.02, y0 - 0.01)
    flap.to(halfwidth(body, fy - 0.1) + 0.01, fy - 0.1).quad(0.3, fy + 0.08, 0, fy + 0.08)
    flap.quad(-0.3, fy + 0.08, -halfwidth(body, fy - 0.1) - 0.01, fy - 0.1)
    els.append(fill(flap.arr(), 'main', rank=1))
  ys = y0 + (0.45 if shape['flap'] else 0.16)
  for bxx in {0: [], 1: [0.0], 2: [-0.28, 0.28]}[shape['buckles']]:
    els.append(fill(rect(bxx - 0.06, ys - 0.05, bxx + 0.06, ys + 0.05), 'metal', rank=2))
  return els


def hat(shape):
  scale = shape['width']
  yb = 0.3
  hb = shape['band_h']
  ch = shape['crown_h'] * shape['tall']
  half_w = 0.46 * scale
  yt = yb - ch
  kind = shape['crown']
  if kind == 'round':
    crown = np.vstack([[(-half_w, yb)], ellipse(0, yb - 0.02, half_w, ch, 20, math.pi, 2 * math.pi),
                       [(half_w, yb)]])
  elif kind == 'flat':
    crown = Path(-half_w, yb).to(-0.88 * half_w, yt + 0.05)
    crown.quad(-0.85 * half_w, yt, -0.7 * half_w, yt).to(0.7 * half_w, yt)
    crown = crown.quad(0.85 * half_w, yt, 0.88 * half_w, yt + 0.05).to(half_w, yb).arr()
  elif kind == 'pinched':
    crown = Path(-half_w, yb).quad(-half_w, yt, -0.45 * half_w, yt + 0.02)
    crown.quad(0, yt - 0.02, 0, yt + 0.09).quad(0, yt - 0.02, 0.45 * half_w, yt + 0.02)
    crown = crown.quad(half_w, yt, half_w, yb).arr()
  else:
    crown = Path(-0.9 * half_w, yb).to(-0.95 * half_w, yt - 0.15).to(0.95 * half_w, yt - 0.15).to(
        0.9 * half_w, yb).arr()
  els = []
  brim = shape['brim']
  if brim == 'bill':
    bill = Path(-0.2 * half_w, yb - 0.02).to(half_w, yb - 0.06)
    bill.quad(half_w + 0.55, yb - 0.02, half_w + 0.6, yb + 0.12)
    bill.quad(half_w, yb + 0.14, -0.2 * half_w, yb + 0.06)
    els.append(fill(bill.arr(), 'main', rank=1))
  else:
    bw = (1.35 if brim == 'narrow' else 1.9) * half_w
    els.append(fill(ellipse(0, yb, bw, 0.12 if brim == 'narrow' else 0.17, 28), 'main', rank=1))
  els.append(fill(crown, 'main', rank=0))
  xb = halfwidth(crown, yb - 0.001) if kind != 'round' else half_w
  els.append(fill([(-xb, yb), (xb, yb), (xb * 0.985, yb - hb), (-xb * 0.985, yb - hb)],
                  'secondary', rank=1))
  if shape['button']:
    ytop = crown[:, 1].min()
    els.append(fill(ellipse(0, ytop - 0.02, 0.06, 0.04, 12), 'secondary', rank=2))
  return els


def vase(shape):
  scale, yb = shape['width'], 0.9
  height = 1.15 * shape['tall']
  fh = shape['foot_h']
  ybody = yb - fh
  ysh = ybody - height
  half_w = 0.44 * scale
  body = {
      'ovoid': [(ysh, 0.5 * half_w), (ysh + 0.35 * height, half_w), (ybody - 0.05, 0.6 * half_w),
                (ybody, 0.5 * half_w)],
      'cylinder': [(ysh, 0.75 * half_w), (ysh + 0.05, 0.78 * half_w), (ybody - 0.03, 0.78 * half_w),
                   (ybody, 0.72 * half_w)],
      'amphora': [(ysh, 0.55 * half_w), (ysh + 0.2 * height, half_w),
                  (ybody - 0.2 * height, 0.6 * half_w), (ybody, 0.35 * half_w)],
      'flask': [(ysh + 0.1, 0.3 * half_w), (ysh + 0.55 * height, 1.05 * half_w),
                (ybody - 0.04, 0.8 * half_w), (ybody, 0.6 * half_w)]
  }[shape['body']]
  neck = shape['neck']
  ylip = body[0][0] - neck
  lip = 0.24 * scale if shape['lip'] == 'flared' else 0.15 * scale
  prof = [(ylip - 0.02, lip), (ylip + 0.06, 0.15 * scale), (body[0][0] - 0.02, 0.15 * scale)] + body
  outline = lathe(prof, 2)
  els = []
  if shape['handles']:
    for sign in (-1, 1):
      y1, y2 = ylip + 0.1, body[0][0] + 0.18 * height
      x1, x2 = sign * (0.15 * scale - 0.02), sign * (halfwidth(outline, y2) - 0.03)
      handle = Path(x1, y1).cubic(x1 + sign * 0.3, y1 - 0.05, x2 + sign * 0.2, y2 - 0.1, x2, y2, 12)
      els.append(fill(band(handle.arr(), 0.055), 'main', rank=2))
  els.append(fill(outline, 'main', rank=0))
  fw = halfwidth(outline, ybody - 0.001)
  els.append(fill([(-fw, ybody - 0.01), (fw, ybody - 0.01), (fw + 0.05, yb), (-fw - 0.05, yb)],
                  'secondary', rank=1))
  els.append(fill(ellipse(0, ylip - 0.02, lip * 0.95, 0.035, 16), 'dark', rank=1))
  return els
