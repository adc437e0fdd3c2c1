"""2D shape primitives of the parametric designs: polylines with Bezier segments, lathe
outlines, bands along a centre line, and the drawn elements (`Element`) a design is made of.

Object coordinates: x to the right, y down, the object roughly within [-1, 1].
"""

import dataclasses
import math

import numpy as np


class Path:
  """A polyline builder with Bezier segments (object coordinates, y down)."""

  def __init__(self, x, y):
    self.points = [(float(x), float(y))]

  def to(self, x, y):
    self.points.append((float(x), float(y)))
    return self

  def quad(self, cx, cy, x, y, n=6):
    p0, control, p1 = np.array(self.points[-1]), np.array((cx, cy)), np.array((x, y))
    ts = np.linspace(0, 1, n + 1)[1:, None]
    self.points.extend(map(tuple, (1 - ts) ** 2 * p0 + 2 * (1 - ts) * ts * control + ts ** 2 * p1))
    return self

  def cubic(self, c1x, c1y, c2x, c2y, x, y, n=8):
    p0, c1, c2, p1 = (np.array(v) for v in (self.points[-1], (c1x, c1y), (c2x, c2y), (x, y)))
    ts = np.linspace(0, 1, n + 1)[1:, None]
    pts = (1 - ts)**3 * p0 + 3 * (1 - ts)**2 * ts * c1 + 3 * (1 - ts) * ts**2 * c2 + ts**3 * p1
    self.points.extend(map(tuple, pts))
    return self

  def extend(self, pts):
    self.points.extend(map(tuple, np.asarray(pts, float)))
    return self

  def arr(self):
    return np.asarray(self.points, np.float64)


def chaikin(pts, iters=2):
  """Corner cutting of an open polyline; the end points stay."""
  pts = np.asarray(pts, np.float64)
  for _ in range(iters):
    near = 0.75 * pts[:-1] + 0.25 * pts[1:]
    far = 0.25 * pts[:-1] + 0.75 * pts[1:]
    mid = np.empty((2 * len(near), 2))
    mid[0::2], mid[1::2] = near, far
    pts = np.vstack([pts[:1], mid, pts[-1:]])
  return pts


def ellipse(cx, cy, rx, ry, n=24, a0=0.0, a1=2 * math.pi):
  angles = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-6)
  return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)


def rect(x0, y0, x1, y1):
  return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)


def lathe(profile, smooth=2, cx=0.0):
  """Symmetric outline from [(y, half_width), ...] listed top to bottom."""
  profile_pts = np.asarray(profile, np.float64)
  if smooth:
    profile_pts = chaikin(profile_pts, smooth)
  right = np.stack([cx + profile_pts[:, 1], profile_pts[:, 0]], 1)
  left = np.stack([cx - profile_pts[::-1, 1], profile_pts[::-1, 0]], 1)
  return np.vstack([right, left])


def band(center, width):
  """Closed outline of a stroke of `width` along an open centre line."""
  centre = np.asarray(center, np.float64)
  tangent = np.gradient(centre, axis=0)
  tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
  normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) * (np.asarray(width)[..., None] / 2)
  return np.vstack([centre + normal, (centre - normal)[::-1]])


def halfwidth(poly, y, side=1):
  """Half width of a lathe outline at height y (right side when side=1)."""
  pts = poly[:len(poly) // 2]
  order = np.argsort(pts[:, 1])
  return float(np.interp(y, pts[order, 1], pts[order, 0])) * side


@dataclasses.dataclass
class Element:
  """One drawn element: a filled closed outline, or an open/closed line of `width`."""
  pts: np.ndarray
  role: str                 # main | secondary | accent | dark | metal
  rank: int = 1             # sketch order group: 0 = the outline, drawn first
  minor: bool = False       # a drawer may omit it
  line: bool = False        # a line (photo: width), not a filled outline
  closed: bool = True
  width: float = 0.02       # line width in object units


def fill(pts, role, rank=1, minor=False):
  return Element(np.asarray(pts, np.float64), role, rank, minor)


def line(pts, role, rank=2, minor=False, width=0.02, closed=False):
  return Element(np.asarray(pts, np.float64), role, rank, minor, True, closed, width)
