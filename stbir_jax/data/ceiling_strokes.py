"""What a perfect reader learns from the strokes a robustness bucket leaves of a sketch.

A simulated drawer (synth.render.render_sketch) strokes a structure's elements outline first,
then parts, then details, shuffling within each group; may omit the minor ones; and draws some
closed elements as two strokes. A bucket's stroke degradations (degradations._keep_strokes)
then keep the strokes whose id is at most ceil(keep_fraction * n) and drop each of those with
probability `stroke_dropout`, showing stroke 1 if none is left. So a severe sketch often lacks
the late details (laces, straps, toe caps) that tell a family's structures apart.

The reader is granted perfect perception: it sees exactly which elements remain, whole or as
which of their two strokes, and tells a spurious stroke from a drawn one and a thickened line
from a thin one. An element is the same in two structures only where its geometry is
identical (the structures of a family share their style, so most of their elements are). The
likelihood of what remains under a candidate structure is a mean over the drawer's random
choices (order, omissions, splits) of the exact probability of the bucket's keep-and-drop
draws given them: a Rao-Blackwellised Monte Carlo estimate.
"""

import dataclasses

import numpy as np

# The drawer's choices (synth.render.render_sketch) that decide which strokes exist and in
# which order.
OMIT = (0.2, 0.8)            # per sketch: the probability of omitting each minor element
SPLIT = (0.0, 0.5)           # per sketch: the probability of drawing a closed element in two
SPACING = (1.5, 4.0)         # points along a stroke, in 64ths of the resolution
OVERDRAW = (-0.02, 0.06)     # a closed stroke's overshoot, as a fraction of its length
MIN_SPLIT_POINTS = 9         # a closed element needs more than 8 points to be split
DRAWER_SCALE = (0.95, 1.04)
KEEP_EPS = 1e-4              # degradations._CEIL_EPS: the partial drawing's round-off guard
SAMPLES = 1024               # drawer draws per likelihood (256: 0.8 points lower on severe)

NONE, FIRST, SECOND, WHOLE = 0, 1, 2, 3   # what is left of an element


def element_key(element) -> tuple:
  """A hashable key equal for two elements exactly where a perfect reader could not tell them
  apart: the same geometry, role and kind."""
  return (element.role, int(element.rank), bool(element.minor), bool(element.line),
          bool(element.closed), float(element.width), element.pts.shape, element.pts.tobytes())


@dataclasses.dataclass(frozen=True)
class Strokes:
  """One structure's drawing (synth.render.Drawing) as the drawer strokes it."""
  keys: tuple            # element_key per element
  rank: np.ndarray       # (E,) the drawing-order group
  minor: np.ndarray      # (E,) whether the drawer may omit it
  closed: np.ndarray     # (E,) closed strokes may be split in two
  total: np.ndarray      # (E,) arclength, object units

  @classmethod
  def of(cls, drawing) -> 'Strokes':
    return cls(keys=tuple(element_key(e) for e in drawing.els), rank=drawing.rank.copy(),
               minor=drawing.minor.copy(), closed=drawing.closed.copy(),
               total=drawing.total.copy())


@dataclasses.dataclass(frozen=True)
class Draws:
  """`samples` drawers' choices for one structure: (S, E) first stroke id of each element (0
  where it is omitted), whether it is drawn as two strokes (ids first and first + 1), and (S,)
  the number of strokes."""
  first: np.ndarray
  two: np.ndarray
  count: np.ndarray


def draw(strokes: Strokes, photo_scale: float, resolution: int, rng, samples: int) -> Draws:
  """The drawer's order, omissions and splits, `samples` times (render_sketch's distribution;
  `photo_scale`: the photo pose's scale, which with the drawer's decides how many points a
  stroke has)."""
  num = len(strokes.keys)
  shape = (samples, num)
  omit = rng.uniform(*OMIT, (samples, 1))
  split = rng.uniform(*SPLIT, (samples, 1))
  spacing = rng.uniform(*SPACING, (samples, 1)) * resolution / 64.0
  scale = photo_scale * rng.uniform(*DRAWER_SCALE, (samples, 1))
  r_omit, r_order, r_over, r_split = rng.random((4,) + shape)
  present = ~(strokes.minor & (r_omit < omit))
  length = strokes.total * np.where(strokes.closed, 1.0 + OVERDRAW[0]
                                    + r_over * (OVERDRAW[1] - OVERDRAW[0]), 1.0)
  points = np.maximum(2, (length * scale / spacing).astype(int) + 1)
  two = present & strokes.closed & (points >= MIN_SPLIT_POINTS) & (r_split < split)
  # Outline first (in the drawing's order), then each later group shuffled.
  rank = np.broadcast_to(strokes.rank, shape)
  order = np.lexsort((np.where(rank == 0, 0.0, r_order), rank), axis=-1)
  pieces = np.take_along_axis(present * (1 + two), order, axis=-1)
  starts = np.cumsum(pieces, axis=-1) - pieces + 1
  first = np.zeros(shape, np.int64)
  np.put_along_axis(first, order, np.where(pieces > 0, starts, 0), axis=-1)
  return Draws(first=first, two=two, count=pieces.sum(-1))


def _limit(count, keep_fraction: float):
  """The last stroke id the partial drawing keeps (degradations._keep_strokes)."""
  return np.ceil(keep_fraction * count.astype(np.float64) - KEEP_EPS).astype(np.int64)


def observe(strokes: Strokes, draws: Draws, stroke_dropout: float, keep_fraction: float,
            rng) -> dict:
  """{element key: FIRST, SECOND or WHOLE} of what a bucket leaves of the first drawer of
  `draws`: a query's strokes."""
  first, two, count = draws.first[0], draws.two[0], int(draws.count[0])
  limit = int(_limit(np.asarray(count), keep_fraction))
  survive = rng.random(count + 1) >= stroke_dropout
  kept = (np.arange(count + 1) >= 1) & (np.arange(count + 1) <= limit) & survive
  if not kept.any():
    kept[1] = True
  out = {}
  for e, key in enumerate(strokes.keys):
    if first[e] == 0:
      continue
    a = kept[first[e]]
    b = kept[first[e] + 1] if two[e] else a
    state = WHOLE if a and b else FIRST if a else SECOND if b else NONE
    if state != NONE:
      out[key] = state
  return out


def likelihood(visible: dict, strokes: Strokes, draws: Draws, stroke_dropout: float,
               keep_fraction: float) -> float:
  """p(`visible` | this structure): 0 where an element that remains is not in its drawing, else
  the mean over `draws` of the probability that the bucket's draws leave exactly `visible`."""
  index = {key: e for e, key in enumerate(strokes.keys)}
  if any(key not in index for key in visible):
    return 0.0
  states = np.zeros(len(strokes.keys), np.int64)
  for key, state in visible.items():
    states[index[key]] = state
  first, two = draws.first, draws.two
  limit = _limit(draws.count, keep_fraction)[:, None]
  present = first > 0
  live = 1.0 - stroke_dropout
  q1 = live * (present & (first <= limit))
  q2 = np.where(two, live * (present & (first + 1 <= limit)), 1.0)
  # q2 = 1 for a single stroke: its one id decides it, so WHOLE <=> kept, NONE <=> dropped.
  whole = np.where(two, q1 * q2, q1)
  factor = np.select([states == WHOLE, states == FIRST, states == SECOND],
                     [whole, np.where(two, q1 * (1 - q2), 0.0),
                      np.where(two, (1 - q1) * q2, 0.0)],
                     default=np.where(two, (1 - q1) * (1 - q2), 1 - q1))
  p = np.prod(factor, axis=-1)
  # Nothing kept (all `limit` strokes dropped): stroke 1, the outline's first, is shown anyway,
  # so that event leaves stroke 1 alone instead of an empty sketch.
  one = first == 1
  only_one = np.all(np.where(one, states == np.where(two, FIRST, WHOLE), states == NONE),
                    axis=-1)
  p = p + (only_one.astype(float) - np.all(states == NONE)) * stroke_dropout ** limit[:, 0]
  return float(p.mean())


def is_modelled(stroke_dropout: float, keep_fraction: float) -> bool:
  """Whether a bucket takes strokes away (else every element stays whole)."""
  return bool(stroke_dropout > 0 or keep_fraction < 1)


def check(stroke_dropout: float, keep_fraction: float) -> None:
  if not 0.0 <= stroke_dropout <= 1.0:
    raise ValueError(f'stroke_dropout={stroke_dropout!r}; expected a probability in [0, 1].')
  if not 0.0 < keep_fraction <= 1.0:
    raise ValueError(f'keep_fraction={keep_fraction!r}; expected a fraction in (0, 1].')
