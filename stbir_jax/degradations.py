"""STBIR module 1, Robustness Enhancement, first half: query-quality buckets and the
degradations that apply them (the sampler that picks a bucket per query is
stbir_jax/curriculum.py).

Pure JAX, so they run inside the jitted train step and a resumed run repeats the same draws
(everything is keyed by the step key). Each example of a batch is degraded by its own quality
bucket (`Buckets`, a struct of arrays built once on host from config.curriculum.buckets, checked
by `check_buckets` when the config is validated). The sketch is a stroke-order map (uint8
(B, R, R), 0 = background, k = k-th stroke), so stroke-level edits are look-up tables on stroke
ids:

  sketch: stroke dropout and partial drawing (one keep mask over stroke ids), spurious strokes
          (short random segments with new ids n+1.., rasterised on device), affine jitter
          (nearest neighbour, so ids stay integers), thickness (grey dilation = max-pool, ids
          kept). Applied in that order, so spurious strokes are jittered and thickened like
          the real ones.
  text:   word dropout and vague text (attribute words removed). A removed token is taken out
          and the rest is compacted to the left: the text tower always sees
          [CLS] w1 .. wk [SEP] followed by padding (id 0, mask 0), never a gap.
          [CLS] (position 0) and [SEP] (the last real token) are never removed.
  missing modality: has_sketch / has_text False and the content zeroed (sketch 0; text ids 0,
          mask 0). A bucket never takes away an example's only remaining modality unless it
          says both are missing.
"""

import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

BUCKET_FIELDS = ('stroke_dropout', 'keep_fraction', 'jitter', 'thickness', 'noise_strokes',
                 'word_dropout', 'vague_text', 'missing_sketch', 'missing_text', 'level')

# Static caps: the rasteriser and the dilation unroll to these when the bucket table is traced
# (otherwise to the table's own maximum). check_buckets refuses larger values.
MAX_NOISE_STROKES = 16
MAX_THICKNESS = 8
# Spurious strokes are segments of length uniform in this range, as a fraction of the size.
NOISE_LENGTH = (0.1, 0.3)
# ceil(keep_fraction * n) is taken after subtracting this, so float32 round-off in e.g.
# 0.7 * 10 = 7.0000005 does not keep an extra stroke.
_CEIL_EPS = 1e-4

# Words a vague description leaves out: everything the synthetic generator uses for colour,
# pattern and material, plus common ones. Each is one token of the bundled BERT vocab or starts
# with a harmless WordPiece (woolen -> wool, checkered -> check, suede -> sued, breathable ->
# breath); words splitting into unrelated pieces (khaki -> k, teal -> tea) are left out.
ATTRIBUTE_WORDS = (
    # colours
    'red', 'blue', 'green', 'yellow', 'black', 'white', 'brown', 'grey', 'gray', 'pink',
    'orange', 'purple', 'navy', 'beige', 'tan', 'gold', 'golden', 'silver', 'cream', 'ivory',
    'maroon', 'burgundy', 'olive', 'turquoise', 'violet', 'crimson', 'dark', 'pale', 'bright',
    'colored', 'coloured', 'colorful',  # not 'light': a noun for lamps
    # patterns
    'striped', 'stripes', 'stripe', 'dotted', 'dots', 'polka', 'checked', 'checkered', 'plaid',
    'plain', 'floral', 'patterned', 'pattern', 'spotted', 'camouflage',
    # materials
    'leather', 'canvas', 'suede', 'metal', 'metallic', 'wood', 'wooden', 'plastic', 'fabric',
    'velvet', 'rubber', 'glass', 'ceramic', 'wool', 'woolen', 'denim', 'cotton', 'silk', 'steel',
    'iron', 'mesh', 'knit', 'knitted', 'linen', 'marble', 'porcelain', 'patent', 'glossy',
    'shiny', 'cork', 'paper', 'felt', 'straw', 'woven', 'breathable',
)


class CurriculumError(ValueError):
  pass


# ------------------------------------------------------------------------------------ buckets


class Buckets(NamedTuple):
  """Bucket parameters as a struct of arrays, each of shape (NB,)."""
  stroke_dropout: Any   # float32: probability of removing each stroke
  keep_fraction: Any    # float32: keep strokes with id <= ceil(keep_fraction * n)
  jitter: Any           # float32: max affine jitter, fraction of the image size
  thickness: Any        # int32: dilation radius in pixels
  noise_strokes: Any    # int32: spurious strokes added
  word_dropout: Any     # float32: probability of removing each word
  vague_text: Any       # bool: remove attribute words
  missing_sketch: Any   # bool
  missing_text: Any     # bool
  level: Any            # int32: difficulty level for the competence schedule


def _get(bucket, field, where):
  try:
    return bucket[field]
  except (KeyError, AttributeError, TypeError):
    raise CurriculumError(f'{where} has no field {field!r}; a bucket needs: name, '
                          f'{", ".join(BUCKET_FIELDS)}.') from None


def bucket_names(bucket_configs) -> list:
  return [str(b['name']) for b in bucket_configs]


# Each field's value that leaves a query as it is (a 'clean' bucket).
NO_DEGRADATION = dict(stroke_dropout=0.0, keep_fraction=1.0, jitter=0.0, thickness=0,
                      noise_strokes=0, word_dropout=0.0, vague_text=False, missing_sketch=False,
                      missing_text=False)


def clean_buckets(buckets: Buckets) -> np.ndarray:
  """(num_buckets,) bool: True for a bucket that applies no degradation (every field at its
  NO_DEGRADATION value), whatever its name or level."""
  clean = np.ones(len(buckets.level), bool)
  for field, value in NO_DEGRADATION.items():
    clean &= np.asarray(getattr(buckets, field)) == value
  return clean


def single_degradations(bucket) -> list:
  """[(field, bucket dict)]: for each degradation a bucket applies, a bucket named
  '<name>.<field>' that applies only that one at the bucket's value (the others as
  NO_DEGRADATION). Empty for a bucket with fewer than two: its one degradation is itself. The
  values are the bucket's own, so a table extended with these has the same static maxima (noise
  strokes, thickness) and gives the bucket's queries the same draws."""
  return [(f, dict(NO_DEGRADATION, name=f'{bucket["name"]}.{f}', level=bucket['level'],
                   **{f: bucket[f]}))
          for f in _breakdown_fields(bucket)]


def all_but_one_degradation(bucket) -> list:
  """[(field, bucket dict)]: for each degradation a bucket applies, a bucket named
  '<name>.no_<field>' that applies all the others at the bucket's values and not that one: what
  the bucket would cost if that degradation were undone exactly (an oracle for a lever that
  removes it). Empty for a bucket with fewer than two. Each field draws from its own key
  (`degrade`), so the others keep the bucket's draws."""
  values = {f: bucket[f] for f in NO_DEGRADATION}
  return [(f, dict(values, name=f'{bucket["name"]}.no_{f}', level=bucket['level'],
                   **{f: NO_DEGRADATION[f]}))
          for f in _breakdown_fields(bucket)]


def _breakdown_fields(bucket) -> list:
  """The degradations a bucket applies, or none when it applies fewer than two (a bucket of one
  degradation is its own breakdown)."""
  fields = [f for f, clean in NO_DEGRADATION.items() if bucket[f] != clean]
  return fields if len(fields) >= 2 else []


def check_buckets(bucket_configs) -> None:
  """Raises CurriculumError naming the first bucket field that is missing or out of range (at
  config validation, stbir_jax/curriculum.py:check_config; never while a step is traced). The one
  check of config.curriculum.buckets: config_checks runs it through curriculum.check_config."""
  if not len(bucket_configs):  # pylint: disable=g-explicit-length-test
    raise CurriculumError('config.curriculum.buckets is empty; it needs at least "clean".')
  names = [_get(b, 'name', f'config.curriculum.buckets[{i}]')
           for i, b in enumerate(bucket_configs)]
  for i, (name, b) in enumerate(zip(names, bucket_configs, strict=True)):
    if not isinstance(name, str) or not name:
      raise CurriculumError(f'config.curriculum.buckets[{i}].name={name!r}; expected a '
                            'non-empty string.')
    where = f'config.curriculum.buckets[{i}] ({name!r})'
    _check_bucket(where, {f: _get(b, f, where) for f in BUCKET_FIELDS})


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v)


def _check_bucket(where: str, values: dict) -> None:
  def check(field, ok, expected):
    if not ok:
      raise CurriculumError(f'{where}.{field}={values[field]!r}; expected {expected}.')

  def in_range(field, low, high, low_open=False):
    v = values[field]
    return _is_number(v) and (v > low if low_open else v >= low) and v <= high

  check('stroke_dropout', in_range('stroke_dropout', 0.0, 1.0), 'a probability in [0, 1]')
  check('word_dropout', in_range('word_dropout', 0.0, 1.0), 'a probability in [0, 1]')
  check('keep_fraction', in_range('keep_fraction', 0.0, 1.0, low_open=True),
        'a fraction in (0, 1]')
  check('jitter', in_range('jitter', 0.0, 0.5), 'a fraction of the size in [0, 0.5]')
  for field, cap in (('thickness', MAX_THICKNESS), ('noise_strokes', MAX_NOISE_STROKES),
                     ('level', None)):
    v = values[field]
    check(field, _is_int(v) and v >= 0 and (cap is None or v <= cap),
          f'an integer in [0, {cap}]' if cap is not None else 'an integer >= 0')
  for field in ('vague_text', 'missing_sketch', 'missing_text'):
    check(field, isinstance(values[field], bool), 'True or False')


def buckets_from_config(bucket_configs) -> Buckets:
  """config.curriculum.buckets (list of ConfigDicts or dicts, checked by check_buckets) ->
  Buckets of numpy arrays."""
  if isinstance(bucket_configs, Buckets):
    return bucket_configs
  column = lambda field, dtype: np.asarray([b[field] for b in bucket_configs], dtype)
  return Buckets(
      stroke_dropout=column('stroke_dropout', np.float32),
      keep_fraction=column('keep_fraction', np.float32),
      jitter=column('jitter', np.float32),
      thickness=column('thickness', np.int32),
      noise_strokes=column('noise_strokes', np.int32),
      word_dropout=column('word_dropout', np.float32),
      vague_text=column('vague_text', bool),
      missing_sketch=column('missing_sketch', bool),
      missing_text=column('missing_text', bool),
      level=column('level', np.int32))


def attribute_token_ids(tokenizer_name: str = 'bert_uncased') -> np.ndarray:
  """Token ids of ATTRIBUTE_WORDS under a tokenizer: what `vague_text` removes."""
  from stbir_jax.data.tokenizer import get_tokenizer  # pylint: disable=g-import-not-at-top
  return np.asarray(sorted(get_tokenizer(tokenizer_name).token_ids(ATTRIBUTE_WORDS)), np.int32)


def _static_max(values, cap: int) -> int:
  """max(values) when the table is concrete (host numpy), else the cap (traced table)."""
  try:
    return int(np.max(np.asarray(values)))
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return cap


# ------------------------------------------------------------------------------- sketch ops


def _keep_strokes(key, sketch, p, keep_fraction):
  """Stroke dropout + partial drawing for one map: a keep table over stroke ids 0..255.

  If dropout would remove every stroke the partial drawing kept, the first (outline) stroke
  survives, so a query that still claims a sketch is never blank.
  """
  ids = jnp.arange(256)
  n = jnp.max(sketch).astype(jnp.int32)
  limit = jnp.ceil(keep_fraction * n.astype(jnp.float32) - _CEIL_EPS).astype(jnp.int32)
  partial = (ids >= 1) & (ids <= limit)
  survive = jax.random.uniform(key, (256,)) >= p
  keep = partial & survive
  keep = keep | ((ids == 1) & ~jnp.any(keep) & (n > 0))
  return jnp.where(keep[sketch.astype(jnp.int32)], sketch, jnp.zeros_like(sketch))


def _noise_strokes(key, sketch, k, max_k: int):
  """Adds k (<= max_k, static) random short segments with ids n+1 .. n+k (clipped at 255)."""
  r = sketch.shape[0]
  points = math.ceil(NOISE_LENGTH[1] * r * math.sqrt(2)) + 2  # <= 1 px apart: connected
  k_start, k_angle, k_len = jax.random.split(key, 3)
  start = jax.random.uniform(k_start, (max_k, 2)) * (r - 1)
  angle = jax.random.uniform(k_angle, (max_k,)) * 2 * jnp.pi
  length = jax.random.uniform(k_len, (max_k,), minval=NOISE_LENGTH[0],
                              maxval=NOISE_LENGTH[1]) * r
  end = jnp.clip(start + length[:, None] * jnp.stack([jnp.sin(angle), jnp.cos(angle)], -1),
                 0, r - 1)
  t = jnp.linspace(0.0, 1.0, points)
  pts = start[:, None, :] + t[None, :, None] * (end - start)[:, None, :]
  pix = jnp.clip(jnp.round(pts).astype(jnp.int32), 0, r - 1)
  flat = (pix[..., 0] * r + pix[..., 1]).reshape(-1)
  n = jnp.max(sketch).astype(jnp.int32)
  new_ids = jnp.minimum(n + 1 + jnp.arange(max_k), 255)
  values = jnp.where(jnp.arange(max_k) < k, new_ids, 0)
  values = jnp.broadcast_to(values[:, None], (max_k, points)).reshape(-1)
  # New ids exceed every existing id, so max-scatter draws them on top (later segments win).
  out = sketch.reshape(-1).astype(jnp.int32).at[flat].max(values)
  return out.reshape(r, r).astype(sketch.dtype)


def _jitter_draw(key, j, r):
  """The affine jitter of one sketch of size r: shift (2,) in pixels (+-j r), scale (1 +- j),
  angle (+-j pi)."""
  k_t, k_s, k_a = jax.random.split(key, 3)
  shift = jax.random.uniform(k_t, (2,), minval=-1.0, maxval=1.0) * j * r
  scale, angle = _scale_angle(k_s, k_a, j)
  return shift, scale, angle


def _jitter(key, sketch, j):
  """Random translation (+-j R), scale (1 +- j) and rotation (+-j pi) about the centre."""
  out = _warp(sketch, *_jitter_draw(key, j, sketch.shape[0]))
  return jnp.where(j > 0, out.astype(sketch.dtype), sketch)


def undo_jitter(key, j, r):
  """The warp that moves a sketch jittered by _jitter(key, ., j) back, as models/aligner.py
  parameterises a warp: (4,) shift dy, dx as fractions of the image, angle, log scale (zeros
  where j is 0). _warp maps x to c + shift + scale F(angle) (x - c) (F a rotation), whose
  inverse is scale 1 / scale, angle -angle and shift -F(-angle) shift / scale."""
  shift, scale, angle = _jitter_draw(key, j, r)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  back = -jnp.stack([cos * shift[0] + sin * shift[1], -sin * shift[0] + cos * shift[1]]) / scale
  return jnp.concatenate([back / r, jnp.stack([-angle, -jnp.log(scale)])])


def _scale_angle(k_scale, k_angle, j):
  """A scale in 1 +- j and a rotation in +-j pi, uniform, each from its own key."""
  scale = 1.0 + jax.random.uniform(k_scale, (), minval=-1.0, maxval=1.0) * j
  angle = jax.random.uniform(k_angle, (), minval=-1.0, maxval=1.0) * j * jnp.pi
  return scale, angle


def source_pixels(r: int, shift, scale, angle):
  """The inverse map of a warp of an (r, r) map that scales it, rotates it about its centre and
  then moves it by `shift` pixels: for every output pixel, the (y, x) it samples, float (r, r)
  each."""
  c = (r - 1) / 2.0
  ys, xs = jnp.meshgrid(jnp.arange(r, dtype=jnp.float32), jnp.arange(r, dtype=jnp.float32),
                        indexing='ij')
  dy, dx = ys - c - shift[0], xs - c - shift[1]
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  return c + (cos * dy + sin * dx) / scale, c + (-sin * dy + cos * dx) / scale


def _warp(x, shift, scale, angle, *, edge: bool = False):
  """One map x (R, R[, C]) scaled, rotated about its centre and then moved by `shift` pixels.
  Nearest neighbour, so a sketch's stroke ids stay exact; what enters the frame is 0, or repeats
  the edge with `edge`."""
  r = x.shape[0]
  sy, sx = (jnp.round(v).astype(jnp.int32) for v in source_pixels(r, shift, scale, angle))
  out = x[jnp.clip(sy, 0, r - 1), jnp.clip(sx, 0, r - 1)]
  if edge:
    return out
  inside = (sy >= 0) & (sy < r) & (sx >= 0) & (sx < r)
  return jnp.where(inside.reshape(inside.shape + (1,) * (x.ndim - 2)), out, 0).astype(x.dtype)


def _dilate3(x):
  """3x3 grey dilation (max-pool, stride 1, same size) of (B, R, R)."""
  r = x.shape[1]
  p = jnp.pad(x, ((0, 0), (1, 1), (1, 1)))
  out = x
  for dy in range(3):
    for dx in range(3):
      out = jnp.maximum(out, p[:, dy:dy + r, dx:dx + r])
  return out


# --------------------------------------------------------------------------------- text ops


def _edit_text(key, ids, mask, p, vague, attribute_ids):
  """Word dropout + vague text for one sequence; removed tokens are compacted away."""
  length = ids.shape[0]
  pos = jnp.arange(length)
  real = mask > 0
  num = jnp.sum(real.astype(jnp.int32))
  droppable = real & (pos > 0) & (pos != num - 1)  # never [CLS] nor [SEP]
  drop = jax.random.uniform(key, (length,)) < p
  if attribute_ids.shape[0]:
    is_attr = jnp.any(ids[:, None] == attribute_ids[None, :], axis=-1)
    drop = drop | (vague & is_attr)
  keep = real & ~(droppable & drop)
  target = jnp.where(keep, jnp.cumsum(keep.astype(jnp.int32)) - 1, length)  # length = dropped
  new_ids = jnp.zeros((length,), ids.dtype).at[target].set(ids, mode='drop')
  new_mask = (pos < jnp.sum(keep.astype(jnp.int32))).astype(mask.dtype)
  return new_ids, new_mask


# ------------------------------------------------------------------------------------ degrade


def degrade(key, batch: dict, bucket_idx, buckets, *, attribute_ids=None,
            with_undo: bool = False):
  """Degrades each query of `batch` by its bucket; returns a new batch (other keys kept), and
  with `with_undo` also the warp (B, 4) that undoes each sketch's jitter (undo_jitter).

  Args:
    key: PRNG key; the same key gives the same degradations.
    batch: dict with sketch uint8 (B, R, R) (or (B, R, R, 1)), text_ids / text_mask int32
      (B, L), has_sketch / has_text bool (B,).
    bucket_idx: int32 (B,), the bucket of each example.
    buckets: `Buckets` (or the config list, converted on host).
    attribute_ids: int32 (A,) token ids of ATTRIBUTE_WORDS under the run's tokenizer. None uses
      the bundled BERT uncased vocabulary (right for data.tokenizer='bert_uncased' only).
  """
  buckets = buckets_from_config(buckets)
  if attribute_ids is None:
    attribute_ids = attribute_token_ids()
  attribute_ids = jnp.asarray(attribute_ids, jnp.int32).reshape(-1)
  sketch = jnp.asarray(batch['sketch'])
  channel = sketch.ndim == 4
  if channel:
    sketch = sketch[..., 0]
  text_ids = jnp.asarray(batch['text_ids'])
  text_mask = jnp.asarray(batch['text_mask'])
  has_sketch = jnp.asarray(batch['has_sketch'], bool)
  has_text = jnp.asarray(batch['has_text'], bool)
  b = sketch.shape[0]
  bucket_idx = jnp.asarray(bucket_idx, jnp.int32)
  param = lambda name: jnp.take(jnp.asarray(getattr(buckets, name)), bucket_idx, axis=0)

  k_keep, k_noise, k_jitter, k_text = (jax.random.split(k, b)
                                       for k in jax.random.split(key, 4))

  # Sketch: remove strokes, add spurious ones, jitter, thicken.
  sketch = jax.vmap(_keep_strokes)(k_keep, sketch, param('stroke_dropout'),
                                   param('keep_fraction'))
  max_noise = _static_max(buckets.noise_strokes, MAX_NOISE_STROKES)
  if max_noise:
    k = jnp.where(has_sketch, param('noise_strokes'), 0)
    sketch = jax.vmap(functools.partial(_noise_strokes, max_k=max_noise))(k_noise, sketch, k)
  sketch = jax.vmap(_jitter)(k_jitter, sketch, param('jitter'))
  thickness = param('thickness')
  for i in range(_static_max(buckets.thickness, MAX_THICKNESS)):
    sketch = jnp.where((thickness > i)[:, None, None], _dilate3(sketch), sketch)

  # Text: word dropout and vague text.
  text_ids, text_mask = jax.vmap(_edit_text, in_axes=(0, 0, 0, 0, 0, None))(
      k_text, text_ids, text_mask, param('word_dropout'), param('vague_text'), attribute_ids)

  # Missing modalities: never the only one left, unless the bucket removes both.
  miss_s, miss_t = param('missing_sketch'), param('missing_text')
  both = miss_s & miss_t
  drop_s = miss_s & (both | has_text)
  drop_t = miss_t & (both | has_sketch)
  sketch = jnp.where(drop_s[:, None, None], jnp.zeros_like(sketch), sketch)
  text_ids = jnp.where(drop_t[:, None], jnp.zeros_like(text_ids), text_ids)
  text_mask = jnp.where(drop_t[:, None], jnp.zeros_like(text_mask), text_mask)

  if channel:
    sketch = sketch[..., None]
  out = dict(batch, sketch=sketch, text_ids=text_ids, text_mask=text_mask,
             has_sketch=has_sketch & ~drop_s, has_text=has_text & ~drop_t)
  if not with_undo:
    return out
  undo = jax.vmap(undo_jitter, in_axes=(0, 0, None))(k_jitter, param('jitter'), sketch.shape[1])
  return out, undo


def translate(x, dy, dx, *, edge: bool = False):
  """One map x (R, R[, C]) moved by (dy, dx) whole pixels (traced integers); what leaves the frame
  is lost, and what enters is 0, or repeats the edge with `edge`."""
  ys, xs = jnp.arange(x.shape[0]) - dy, jnp.arange(x.shape[1]) - dx   # source of each pixel
  moved = x[jnp.clip(ys, 0, x.shape[0] - 1)[:, None], jnp.clip(xs, 0, x.shape[1] - 1)[None, :]]
  if edge:
    return moved
  inside = ((ys >= 0) & (ys < x.shape[0]))[:, None] & ((xs >= 0) & (xs < x.shape[1]))[None, :]
  inside = inside.reshape(inside.shape + (1,) * (moved.ndim - 2))
  return jnp.where(inside, moved, 0).astype(x.dtype)


def shift_pairs(key, batch: dict, fraction, *, sketch_later: bool = False) -> dict:
  """Moves each example's photo and sketch by the same whole-pixel offset, up to `fraction` of
  the image each way: the pair still lines up, but not at one place in the frame. The sketch's
  vacated pixels are background (0), the photo's repeat its edge (a black band would be a cue).

  With `sketch_later` the sketch stays where it was drawn and 'sketch_shift' (B, 2) float32
  holds its offset (dy, dx pixels; the same draws) for the model to apply after the sketch
  aligner (train.pair_shift_after_align): an aligner that read the moved sketch could not tell
  the pair's shift, which it must keep, from a jitter's, which it must undo."""
  image, sketch = jnp.asarray(batch['image']), jnp.asarray(batch['sketch'])
  r = image.shape[1]
  reach = int(round(float(fraction) * r))
  if reach == 0 and sketch_later:
    return dict(batch, sketch_shift=jnp.zeros((image.shape[0], 2), jnp.float32))
  if reach == 0:
    return batch
  offsets = jax.random.randint(key, (image.shape[0], 2), -reach, reach + 1)
  if sketch_later:
    image = jax.vmap(lambda photo, o: translate(photo, o[0], o[1], edge=True))(image, offsets)
    return dict(batch, image=image, sketch_shift=offsets.astype(jnp.float32))

  def move(photo, drawing, offset):
    return (translate(photo, offset[0], offset[1], edge=True),
            translate(drawing, offset[0], offset[1]))

  image, sketch = jax.vmap(move)(image, sketch, offsets)
  return dict(batch, image=image, sketch=sketch)


def warp_pairs(key, batch: dict, fraction) -> dict:
  """Scales (1 +- `fraction`) and rotates (+-`fraction` pi) each example's photo and sketch about
  the image centre by the same random draw, as the sketch buckets' jitter does to a sketch alone:
  the pair still lines up, at a pose the generator did not draw. The sketch's vacated pixels are
  background (0), the photo's repeat its edge."""
  if not fraction:
    return batch
  image, sketch = jnp.asarray(batch['image']), jnp.asarray(batch['sketch'])
  keys = jax.random.split(key, (image.shape[0], 2))
  zero = jnp.zeros((2,), jnp.float32)

  def warp(photo, drawing, pair_keys):
    scale, angle = _scale_angle(pair_keys[0], pair_keys[1], fraction)
    return (_warp(photo, zero, scale, angle, edge=True), _warp(drawing, zero, scale, angle))

  image, sketch = jax.vmap(warp)(image, sketch, keys)
  return dict(batch, image=image, sketch=sketch)


def degrade_queries(key, batch: dict, bucket_index: int, buckets, *, attribute_ids=None) -> dict:
  """Degrades every query of `batch` by bucket `bucket_index` (the robustness table)."""
  n = len(buckets_from_config(buckets).level)
  if not 0 <= int(bucket_index) < n:
    raise CurriculumError(f'bucket_index={bucket_index}; expected 0..{n - 1}.')
  b = np.shape(batch['sketch'])[0]
  return degrade(key, batch, jnp.full((b,), int(bucket_index), jnp.int32), buckets,
                 attribute_ids=attribute_ids)
