r"""The benchmark's ceiling: the best Acc@1 any model could reach on an STBIR-Synth split.

  python -m stbir_jax.data.ceiling --config=configs/base.py:demo --split=test

A query reveals only what the generator put into it. A perfect reader of a sketch recovers the
drawn object's exact structure (its family and structural variant) and the drawer's pose of it
(the photo's pose, then the drawer's own rotation within ±4°, scale within [0.95, 1.04] and
shift within ±3 % of the image); it learns nothing of the appearance. A perfect reader of a
description recovers the generator's choices behind it (noun, adjective, which attributes are
named), so a gallery photo explains the description only where the same choices give the same
words for that photo's category and appearance. Every gallery photo is a priori equally likely,
so the Bayes-optimal ranking orders photos by the likelihood of the query:

  sketch   p(pose | photo) = 1 / s_photo inside the drawer's range, else 0, for the photos of
           the drawn structure (s: the photo's scale; the Jacobian of the drawer's scale), 0 for
           every other photo
  text     p(words | photo) = [same words] * P(noun | category) * P(adjective | category)
           * P(pattern named or not | the photo's pattern) (0.75 / 0.25 for a patterned photo,
           1 / 0 for a plain one); the other choices have the same probability for every photo
  both     the product

Acc@1 of the best model, with ties broken uniformly, is the mean over queries of
[target in argmax] / |argmax| (bayes_acc_at_1). It is an upper bound: it grants perfect
perception (no lost strokes, no tokenizer truncation), which no model has.

  python -m stbir_jax.data.ceiling --config=configs/base.py:demo_budget --split=test \
      --jitter=0.06,0.1 --pose_blind

adds the ceiling of sketches that a robustness bucket's affine jitter then moved
(jittered_sketch_likelihoods: the drawer's and the jitter's ranges combined) and of sketches
that show their structure only.

  python -m stbir_jax.data.ceiling --config=configs/base.py:demo_budget --split=test \
      --buckets=moderate,severe

adds the ceiling of each named robustness bucket (config.curriculum.buckets): its jitter moves
the sketch as above, and its word dropout and vague text take tokens out of the description
(degraded_text_likelihood: every way the tokens left could have come from a photo's
description), and its stroke dropout and partial drawing take strokes out of the sketch
(ceiling_strokes: a structure whose drawing lacks an element that remains is ruled out, the
others weighed by how likely they leave what remains). Thickened and spurious strokes are read
through, so the bucket's figure bounds its Bayes ceiling from above.
"""

import dataclasses
import json
import math
import time

import numpy as np
from absl import logging

from stbir_jax.data import ceiling_strokes, names, synth
from stbir_jax.data.synth import render

MODES = ('sketch', 'text', 'sketch+text')
# The drawer's perturbation ranges (synth.render.render_sketch).
DRAWER_ROTATION = math.radians(4.0)
DRAWER_SCALE = ceiling_strokes.DRAWER_SCALE
DRAWER_SHIFT = 0.03          # fraction of the resolution
PATTERN_NAMED = 0.75         # P(a patterned photo's description names its pattern)
TOLERANCE = 1e-9
SAMPLES = 16384             # Monte Carlo draws of a jittered sketch's prior (jitter_prior)
ARGUMENTS = 'arguments'     # for_config's cache: the ceiling() arguments behind each figure
PROGRESS_EVERY_S = 30.0     # a progress line this often while a ceiling is computed


@dataclasses.dataclass
class Photo:
  """The ground truth of one gallery photo and its queries."""
  instance: int
  structure_key: tuple        # (family, structural variant): what a sketch shows
  category: object            # synth.categories.Category
  appearance: dict
  pose: tuple                 # (A (2, 2), b (2,)) object -> pixels
  drawer_poses: list          # per sketch: rotation, scale, shift
  text_choices: list          # per description: synth.descriptions.text_choices
  texts: list
  strokes: object = None      # ceiling_strokes.Strokes of its structure's drawing


def _scale_angle(matrix):
  """A = s * R(angle) -> (s, angle)."""
  return math.sqrt(abs(np.linalg.det(matrix))), math.atan2(matrix[1, 0], matrix[0, 0])


def _rotation(angle):
  return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def _relative_poses(drawn: Photo, total_scale: float, total_angle: float, offset, gallery: list,
                    centre, structures=None):
  """Yields (index, photo scale, scale, rotation, shift) for each gallery photo of the drawn
  structure (or of `structures`, a set of structure keys): the transform about `centre` that
  takes that photo's pose to the object a sketch shows at `total_scale`, `total_angle` and
  `offset`."""
  structures = {drawn.structure_key} if structures is None else structures
  for i, photo in enumerate(gallery):
    if photo.structure_key not in structures:
      continue
    a, b = photo.pose
    s, angle = _scale_angle(a)
    scale, rotation = total_scale / s, total_angle - angle
    yield i, s, scale, rotation, offset - centre - scale * _rotation(rotation) @ (b - centre)


def sketch_likelihoods(drawn: Photo, drawer_pose: dict, gallery: list, resolution: int,
                       structures=None):
  """(N,) p(sketch | photo) up to a constant: a sketch of `drawn` under `drawer_pose` against
  every gallery photo (of the drawn structure, or of `structures`, a set of structure keys: the
  pose's part of the likelihood; 0 elsewhere)."""
  centre = np.full(2, resolution / 2.0)
  a_drawn, b_drawn = drawn.pose
  s_drawn, angle_drawn = _scale_angle(a_drawn)
  drawer = drawer_pose['scale'] * _rotation(drawer_pose['rotation'])
  # What the sketch shows: the total scale and angle of the object, and where it is.
  total_scale = drawer_pose['scale'] * s_drawn
  total_angle = drawer_pose['rotation'] + angle_drawn
  offset = drawer @ (b_drawn - centre) + centre + drawer_pose['shift']
  out = np.zeros(len(gallery))
  # scale, rotation, shift: the drawer's, if this were the photo.
  for i, s, scale, rotation, shift in _relative_poses(drawn, total_scale, total_angle, offset,
                                                      gallery, centre, structures):
    inside = (DRAWER_SCALE[0] - TOLERANCE <= scale <= DRAWER_SCALE[1] + TOLERANCE
              and abs(rotation) <= DRAWER_ROTATION + TOLERANCE
              and np.all(np.abs(shift) <= DRAWER_SHIFT * resolution + 1e-6))
    out[i] = 1.0 / s if inside else 0.0
  return out


def jitter_prior(jitter: float, resolution: int, samples: int, seed: int = 0) -> dict:
  """Draws of what a perfect reader cannot see apart in a jittered sketch: the bucket's jitter
  scale and rotation (degradations._jitter: 1 +- j, +-j pi) and the drawer's own shift, which
  the jitter then turns and scales. jittered_sketch_likelihoods integrates over them."""
  rng = np.random.default_rng(seed)
  return dict(scale=1.0 + jitter * rng.uniform(-1.0, 1.0, samples),
              rotation=jitter * math.pi * rng.uniform(-1.0, 1.0, samples),
              drawer_shift=DRAWER_SHIFT * resolution * rng.uniform(-1.0, 1.0, (samples, 2)),
              jitter=float(jitter), resolution=int(resolution))


def jittered_sketch_likelihoods(drawn: Photo, drawer_pose: dict, jitter_pose: dict,
                                gallery: list, prior: dict, structures=None) -> np.ndarray:
  """(N,) p(sketch | photo) up to a constant for a sketch of `drawn` that a robustness bucket then
  moved by `jitter_pose` (scale s, rotation, shift in pixels; about the image centre, as
  degradations._jitter). The sketch now shows the object at J D (photo pose), J = s R(rotation)
  the jitter and D the drawer; for each photo of the drawn structure, the density of the
  (scale, angle, residual shift) that would take that photo's pose there is a Monte Carlo mean
  over `prior` (jitter_prior) of the product of the uniform densities of the drawer's scale and
  rotation and of the jitter's shift. With a finite prior the ranking is one a perfect reader
  could use, so its Acc@1 approaches the Bayes ceiling from below. `structures`: as
  sketch_likelihoods."""
  resolution = prior['resolution']
  centre = np.full(2, resolution / 2.0)
  a_drawn, b_drawn = drawn.pose
  s_drawn, angle_drawn = _scale_angle(a_drawn)
  drawer = drawer_pose['scale'] * _rotation(drawer_pose['rotation'])
  jitter = jitter_pose['scale'] * _rotation(jitter_pose['rotation'])
  total_scale = jitter_pose['scale'] * drawer_pose['scale'] * s_drawn
  total_angle = jitter_pose['rotation'] + drawer_pose['rotation'] + angle_drawn
  offset = jitter @ (drawer @ (b_drawn - centre) + drawer_pose['shift']) \
      + jitter_pose['shift'] + centre
  s_j, a_j = prior['scale'], prior['rotation']
  # The prior's jitter applied to the drawer's shift: J t_d, (M, 2).
  cos, sin = np.cos(a_j), np.sin(a_j)
  t_d = prior['drawer_shift']
  turned = s_j[:, None] * np.stack([cos * t_d[:, 0] - sin * t_d[:, 1],
                                    sin * t_d[:, 0] + cos * t_d[:, 1]], axis=1)
  half_shift = prior['jitter'] * resolution
  scale_density = 1.0 / (DRAWER_SCALE[1] - DRAWER_SCALE[0])
  angle_density = 1.0 / (2 * DRAWER_ROTATION)
  shift_density = 1.0 / (2 * half_shift) ** 2
  out = np.zeros(len(gallery))
  # scale: jitter scale x drawer scale; rotation: jitter's + drawer's; residual: J t_d + t_j.
  for i, s, scale, rotation, residual in _relative_poses(drawn, total_scale, total_angle, offset,
                                                         gallery, centre, structures):
    drawer_scale = scale / s_j
    density = (((drawer_scale >= DRAWER_SCALE[0] - TOLERANCE)
                & (drawer_scale <= DRAWER_SCALE[1] + TOLERANCE)) * scale_density / s_j
               * (np.abs(rotation - a_j) <= DRAWER_ROTATION + TOLERANCE) * angle_density
               * np.all(np.abs(residual - turned) <= half_shift + 1e-6, axis=1) * shift_density)
    out[i] = density.mean() / s
  return out


def pose_blind_sketch_likelihoods(drawn: Photo, gallery: list, structures=None) -> np.ndarray:
  """(N,) p(sketch | photo) when the sketch's pose tells nothing: the drawn structure (or
  `structures`, as sketch_likelihoods) only."""
  structures = {drawn.structure_key} if structures is None else structures
  return np.asarray([float(p.structure_key in structures) for p in gallery])


def _category_probability(choices, category) -> float:
  """P(noun, adjective | category): the category-dependent part of a description's choices."""
  p = category.nouns.count(choices['noun']) / len(category.nouns)
  if choices['adjective']:
    p *= category.adjectives.count(choices['adjective']) / len(category.adjectives)
  return p


def text_likelihood(words, choices: dict, photo: Photo, degradation=None) -> float:
  """p(description | photo) up to a constant shared by all photos. With a TextDegradation,
  `words` are the tokens it left of a description made by `choices`."""
  text = synth.text_from_choices(choices, photo.category, photo.appearance)
  match = float(text == words) if degradation is None else degradation.likelihood(words, text)
  if not match:
    return 0.0
  patterned = photo.appearance['pattern'] != 'plain'
  if choices['with_pattern']:
    pattern = PATTERN_NAMED if patterned else 0.0
  else:
    pattern = 1.0 - PATTERN_NAMED if patterned else 1.0
  return match * _category_probability(choices, photo.category) * pattern


def appearance_groups(gallery: list) -> list:
  """[(a photo, indices of every photo with its category and appearance)]: the photos of one
  family's appearance variant differ only in structure, which no description names."""
  groups = {}
  for i, photo in enumerate(gallery):
    key = (photo.structure_key[0], json.dumps(photo.appearance, sort_keys=True))
    groups.setdefault(key, (photo, []))[1].append(i)
  return [(photo, np.asarray(rows)) for photo, rows in groups.values()]


def text_likelihoods(words, choices: dict, gallery: list, groups=None,
                     degradation=None) -> np.ndarray:
  """(N,) p(description | photo) for every gallery photo (`groups`: appearance_groups(gallery),
  computed once for many queries; `degradation`: as text_likelihood)."""
  out = np.zeros(len(gallery))
  for photo, rows in groups if groups is not None else appearance_groups(gallery):
    out[rows] = text_likelihood(words, choices, photo, degradation)
  return out


def degraded_text_likelihood(observed, candidate, p: float, removed=frozenset()) -> float:
  """P(`observed` | `candidate`) for token sequences when each token of `candidate` is taken out
  independently with probability `p`, and always if it is in `removed` (vague text's attribute
  tokens), the rest kept in order (degradations._edit_text): the sum over every way `observed`
  is a subsequence of `candidate`, by dynamic programming over the candidate's tokens."""
  # ways[i]: the probability that the candidate's tokens so far leave observed[:i].
  ways = np.zeros(len(observed) + 1)
  ways[0] = 1.0
  for token in candidate:
    drop, keep = (1.0, 0.0) if token in removed else (p, 1.0 - p)
    kept = np.zeros_like(ways)
    kept[1:] = ways[:-1] * keep * np.fromiter((o == token for o in observed), float,
                                               len(observed))
    ways = ways * drop + kept
  return float(ways[-1])


class TextDegradation:
  """A robustness bucket's word dropout and vague text, as tokens (the bundled BERT tokenizer,
  which degradations.attribute_token_ids uses too): draws a degraded copy of a description and
  scores candidate descriptions against it."""

  def __init__(self, word_dropout: float, vague: bool, seed: int = 0):
    from stbir_jax import degradations  # pylint: disable=g-import-not-at-top
    from stbir_jax.data.tokenizer import get_tokenizer  # pylint: disable=g-import-not-at-top
    self.p = float(word_dropout)
    self._tok = get_tokenizer('bert_uncased').hf_tokenizer
    self.removed = (frozenset(int(i) for i in degradations.attribute_token_ids('bert_uncased'))
                    if vague else frozenset())
    self._rng = np.random.default_rng(seed)
    self._tokens = {}

  def tokens(self, text: str) -> tuple:
    if text not in self._tokens:
      self._tokens[text] = tuple(self._tok.convert_tokens_to_ids(self._tok.tokenize(text)))
    return self._tokens[text]

  def degrade(self, text: str) -> tuple:
    tokens = self.tokens(text)
    drop = self._rng.uniform(size=len(tokens)) < self.p
    return tuple(t for t, d in zip(tokens, drop, strict=True) if not d and t not in self.removed)

  def likelihood(self, observed: tuple, text: str) -> float:
    return degraded_text_likelihood(observed, self.tokens(text), self.p, self.removed)


def bayes_acc_at_1(likelihoods: np.ndarray, target: np.ndarray) -> float:
  """Mean over queries of [target in argmax] / |argmax| for (Q, N) likelihoods: the Acc@1 of the
  Bayes-optimal ranking with ties broken uniformly. A query whose likelihoods are all 0 (it
  contradicts every photo, which the generator never produces) counts as a tie of all."""
  likelihoods = np.asarray(likelihoods, np.float64)
  best = likelihoods.max(axis=1, keepdims=True)
  ties = likelihoods >= best * (1.0 - 1e-9)
  hit = ties[np.arange(len(target)), target]
  return float(np.mean(hit / ties.sum(axis=1)))


def photos(config_name: str, split: str, spec: synth.SynthSpec) -> list:
  gallery, strokes = [], {}
  for record, params in synth.generate_with_params(config_name, split, spec):
    key = (int(record['family']), params['structural_variant'])
    if key not in strokes:
      drawing = render.Drawing(params['category'].build(params['structure']))
      strokes[key] = ceiling_strokes.Strokes.of(drawing)
    gallery.append(Photo(
        instance=int(record['instance']), structure_key=key, category=params['category'],
        appearance=params['appearance'], pose=params['pose'],
        drawer_poses=params['drawer_poses'], text_choices=params['text_choices'],
        texts=list(record['texts']), strokes=strokes[key]))
  return gallery


def ceiling(config_name: str, split: str, spec: synth.SynthSpec, modes=MODES, *,
            jitter: float = 0.0, pose_blind: bool = False, word_dropout: float = 0.0,
            vague_text: bool = False, stroke_dropout: float = 0.0, keep_fraction: float = 1.0,
            samples: int = SAMPLES, stroke_samples: int = ceiling_strokes.SAMPLES,
            seed: int = 0) -> dict:
  """{mode: best Acc@1} over the evaluation's queries (query j of a photo: sketch j, text j mod
  T, as data/pipeline.eval_queries), every query against the whole split's gallery.

  jitter > 0: every sketch is first moved by a robustness bucket's affine jitter of that size
  (a draw per query from `seed`), read through jittered_sketch_likelihoods with a prior of
  `samples` draws. pose_blind: the sketch shows its structure only. Either bounds from above
  what a query of a bucket that also drops strokes could reach, since those only take
  information away (up to the Monte Carlo prior's shortfall, see jittered_sketch_likelihoods).

  word_dropout > 0 or vague_text: every description first loses tokens as a bucket's text
  degradations take them (TextDegradation, a draw per query from `seed`). The reader is granted
  the choices behind the description (noun, which attributes were named, the sentence form),
  so this too bounds the Bayes ceiling from above.

  stroke_dropout > 0 or keep_fraction < 1: every sketch first loses strokes as a bucket's stroke
  degradations take them (ceiling_strokes: a draw per query from `seed`), so a structure
  whose drawing lacks an element that remains is ruled out, and the others are weighed by how
  likely they leave what remains (a mean over `stroke_samples` drawers). The reader is granted
  perfect perception of what remains, so this too bounds the Bayes ceiling from above (up to
  the Monte Carlo means' shortfall)."""
  if jitter < 0 or (jitter and pose_blind):
    raise ValueError(f'jitter={jitter!r}, pose_blind={pose_blind!r}; expected jitter >= 0, '
                     'and not both.')
  if not 0.0 <= word_dropout <= 1.0:
    raise ValueError(f'word_dropout={word_dropout!r}; expected a probability in [0, 1].')
  ceiling_strokes.check(stroke_dropout, keep_fraction)
  gallery = photos(config_name, split, spec)
  groups = appearance_groups(gallery)
  prior = jitter_prior(jitter, spec.resolution, samples, seed) if jitter else None
  draws = np.random.default_rng(seed + 1)
  degradation = (TextDegradation(word_dropout, vague_text, seed + 2)
                 if word_dropout or vague_text else None)

  def text(photo, j):
    words, choices = photo.texts[j], photo.text_choices[j]
    if degradation is not None:
      words = degradation.degrade(words)
    return text_likelihoods(words, choices, gallery, groups, degradation)

  strokes_modelled = ceiling_strokes.is_modelled(stroke_dropout, keep_fraction)
  stroke_draws = np.random.default_rng(seed + 3)
  element_keys = {p.structure_key: frozenset(p.strokes.keys) for p in gallery
                  if p.strokes is not None}

  def drawers(photo, query):
    # The same draws for every candidate of one query: common random numbers for the ranking.
    return ceiling_strokes.draw(photo.strokes, _scale_angle(photo.pose[0])[0], spec.resolution,
                                np.random.default_rng((seed, 3, query)), stroke_samples)

  def strokes_left(photo, query):
    """(N,) p(what strokes remain | photo) and the structures that could have left them."""
    visible = ceiling_strokes.observe(
        photo.strokes, ceiling_strokes.draw(photo.strokes, _scale_angle(photo.pose[0])[0],
                                            spec.resolution, stroke_draws, 1),
        stroke_dropout, keep_fraction, stroke_draws)
    structures = {k for k, keys in element_keys.items() if keys.issuperset(visible)}
    out = np.zeros(len(gallery))
    for i, candidate in enumerate(gallery):
      if candidate.structure_key in structures:
        out[i] = ceiling_strokes.likelihood(visible, candidate.strokes,
                                            drawers(candidate, query), stroke_dropout,
                                            keep_fraction)
    return out, structures

  def sketch(photo, j, query):
    strokes, structures = (strokes_left(photo, query) if strokes_modelled
                           else (1.0, None))
    if pose_blind:
      return strokes * pose_blind_sketch_likelihoods(photo, gallery, structures)
    if prior is None:
      return strokes * sketch_likelihoods(photo, photo.drawer_poses[j], gallery,
                                          spec.resolution, structures)
    u = draws.uniform(-1.0, 1.0, 4)
    jitter_pose = dict(scale=1.0 + jitter * u[0], rotation=jitter * math.pi * u[1],
                       shift=jitter * spec.resolution * u[2:])
    return strokes * jittered_sketch_likelihoods(photo, photo.drawer_poses[j], jitter_pose,
                                                 gallery, prior, structures)

  likelihood = {m: [] for m in modes}
  targets = []
  started, reported = time.monotonic(), time.monotonic()
  for t, photo in enumerate(gallery):
    if time.monotonic() - reported > PROGRESS_EVERY_S:
      reported = time.monotonic()
      logging.info('ceiling of %s %s: %d of %d photos\' queries scored, %.0f s', config_name,
                   split, t, len(gallery), reported - started)
    num_sketches, num_texts = len(photo.drawer_poses), len(photo.texts)
    for j in range(max(num_sketches, num_texts)):
      s = sketch(photo, j, len(targets)) if j < num_sketches else None
      x = text(photo, j % num_texts) if num_texts else None
      for mode, value in (('sketch', s), ('text', x),
                          ('sketch+text', None if s is None or x is None else s * x)):
        if mode in likelihood:
          likelihood[mode].append(value)
      targets.append(t)
  targets = np.asarray(targets)
  out = {}
  for mode, rows in likelihood.items():
    keep = np.asarray([r is not None for r in rows])
    out[mode] = bayes_acc_at_1(np.stack([r for r in rows if r is not None]), targets[keep])
  return out


def spec_from_config(config) -> synth.SynthSpec:
  return synth.SynthSpec(resolution=int(config.data.resolution), **config.data.synth.to_dict())


def _moves_sketch_or_words(bucket) -> bool:
  """Whether a bucket degrades what ceiling() models (jitter, word dropout, vague text, stroke
  dropout, partial drawing)."""
  return bool(bucket.jitter or bucket.word_dropout or bucket.vague_text
              or ceiling_strokes.is_modelled(bucket.stroke_dropout, bucket.keep_fraction))


def degraded_buckets(config) -> list:
  """The robustness evaluator's buckets that degrade a query without removing a modality: those
  with a ceiling of their own (bucket_row)."""
  from stbir_jax import eval_sections  # pylint: disable=g-import-not-at-top
  names_ = eval_sections.config_section(config, 'robustness').buckets
  return [b for b in named_buckets(config, list(names_), 'config.evals.robustness.buckets')
          if not (b.missing_sketch or b.missing_text) and _moves_sketch_or_words(b)]


def bucket_ceiling(ceilings: dict, dataset: str, bucket, mode: str = 'sketch+text'):
  """The best Acc@1 of `mode` queries of a robustness bucket (a config.curriculum.buckets entry)
  from for_config's figures, or None where they do not hold it: a bucket that removes a modality
  leaves the other mode's ceiling."""
  if mode == 'sketch+text' and (bucket.missing_sketch or bucket.missing_text):
    mode = 'text' if bucket.missing_sketch else 'sketch'
  if _moves_sketch_or_words(bucket):
    dataset = f'{dataset}@{bucket.name}'
  return (ceilings or {}).get(dataset, {}).get(mode)


def for_config(config, split: str, cache=None):
  """{dataset configuration: {mode: ceiling}} of a run's evaluation split `split`, with
  '<configuration>@<bucket>' for each of the robustness evaluator's degraded buckets
  (degraded_buckets), or None for data that is not STBIR-Synth (no ground truth). `cache`: an
  epath-like JSON file; what it lacks, or holds for other arguments of ceiling() (a bucket
  redefined, or a cache of an older model of the bucket), is computed and stored."""
  if config.data.name != names.SYNTH:
    return None
  out = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
  arguments = out.pop(ARGUMENTS, {})
  spec = spec_from_config(config)
  buckets = degraded_buckets(config)
  wanted = {}
  for name in config.data.configs:
    wanted[name] = {}
    for bucket in buckets:
      wanted[f'{name}@{bucket.name}'] = bucket_row(bucket, SAMPLES)[2]
  missing = [key for key in wanted if key not in out or arguments.get(key) != wanted[key]]
  for key in missing:
    logging.info('The ceiling of %s on the %s split...', key, split)
    out[key] = ceiling(key.split('@')[0], split, spec, **wanted[key])
    arguments[key] = wanted[key]
  if cache is not None and missing:
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(dict(out, **{ARGUMENTS: arguments}), indent=2, sort_keys=True)
                     + '\n')
  return out


def named_buckets(config, wanted, where: str = '--buckets') -> list:
  """The robustness buckets of config.curriculum.buckets called `wanted`, in that order
  (`where`: what named them, for the error)."""
  by_name = {str(b.name): b for b in config.curriculum.buckets}
  unknown = [name for name in wanted if name not in by_name]
  if unknown:
    raise SystemExit(f'{where}={",".join(wanted)}: no bucket {", ".join(map(repr, unknown))} '
                     f'in config.curriculum.buckets; expected some of {", ".join(by_name)}.')
  return [by_name[name] for name in wanted]


def bucket_row(bucket, samples: int, stroke_samples: int = ceiling_strokes.SAMPLES) -> tuple:
  """(row label, JSON key suffix, keyword arguments of ceiling()) for a robustness bucket: its
  jitter, word dropout, vague text, stroke dropout and partial drawing; its thickened and
  spurious strokes are read through."""
  if bucket.missing_sketch or bucket.missing_text:
    raise SystemExit(f'--buckets: {bucket.name!r} drops a whole modality; its ceiling is the '
                     'other mode\'s row.')
  kwargs = dict(jitter=float(bucket.jitter), word_dropout=float(bucket.word_dropout),
                vague_text=bool(bucket.vague_text),
                stroke_dropout=float(bucket.stroke_dropout),
                keep_fraction=float(bucket.keep_fraction), samples=samples,
                stroke_samples=stroke_samples)
  parts = [f'jitter {bucket.jitter:g}' if bucket.jitter else '',
           f'stroke dropout {bucket.stroke_dropout:g}' if bucket.stroke_dropout else '',
           f'keep {bucket.keep_fraction:g} of the strokes' if bucket.keep_fraction < 1 else '',
           f'word dropout {bucket.word_dropout:g}' if bucket.word_dropout else '',
           'vague text' if bucket.vague_text else '']
  label = f'the {bucket.name} bucket ({", ".join(p for p in parts if p) or "as drawn"})'
  return label, f'@{bucket.name}', kwargs


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  config = f.config
  spec = spec_from_config(config)
  jitters = [float(j) for j in f.jitter]
  if any(j <= 0 for j in jitters):
    raise SystemExit(f'--jitter={",".join(f.jitter)}; expected sizes > 0 (a bucket\'s '
                     '`jitter`, e.g. 0.06,0.1).')
  # (row label, JSON key suffix, keyword arguments of ceiling())
  rows = [('as drawn', '', {})]
  rows += [(f'jitter {j:g}', f'@jitter={j:g}', dict(jitter=j, samples=f.samples))
           for j in jitters]
  if f.pose_blind:
    rows.append(('pose lost', '@pose_blind', dict(pose_blind=True)))
  rows += [bucket_row(bucket, f.samples, f.stroke_samples)
           for bucket in named_buckets(config, f.buckets)]
  results = {}
  lines = [f'Ceiling (best possible Acc@1, %) on STBIR-Synth {f.split}, '
           f'{config.data.resolution} px:', '',
           '| configuration | the query | ' + ' | '.join(MODES) + ' |',
           '|---|---|' + '---:|' * len(MODES)]
  for config_name in config.data.configs:
    for label, suffix, kwargs in rows:
      per_mode = results[config_name + suffix] = ceiling(config_name, f.split, spec, **kwargs)
      lines.append(f'| {config_name} | {label} | '
                   + ' | '.join(f'{100 * per_mode[m]:.2f}' for m in MODES) + ' |')
  print('\n'.join(lines))
  if f.out:
    with open(f.out, 'w') as fh:
      json.dump(results, fh, indent=2, sort_keys=True)


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'The run config, e.g. configs/base.py:demo.',
                                  lock_config=False)
  flags.DEFINE_string('split', 'test', 'Split whose queries and gallery are measured.')
  flags.DEFINE_list('jitter', [], 'Also the ceiling of sketches moved by a robustness bucket\'s '
                    'affine jitter of these sizes (config.curriculum.buckets[].jitter), e.g. '
                    '0.06,0.1.')
  flags.DEFINE_integer('samples', SAMPLES, 'Monte Carlo draws of the prior a jittered sketch\'s '
                       'likelihood integrates over.')
  flags.DEFINE_integer('stroke_samples', ceiling_strokes.SAMPLES, 'Drawer draws per likelihood '
                       'of the strokes a bucket leaves (its stroke dropout and partial drawing).')
  flags.DEFINE_bool('pose_blind', False, 'Also the ceiling of sketches whose pose tells nothing '
                    '(their structure only).')
  flags.DEFINE_list('buckets', [], 'Also the ceiling of queries of these robustness buckets '
                    '(config.curriculum.buckets[].name, e.g. moderate,severe): their jitter, word '
                    'dropout, vague text, stroke dropout and partial drawing; their thickened '
                    'and spurious strokes are read through.')
  flags.DEFINE_string('out', '', 'Optional JSON file for the figures.')
  flags.mark_flag_as_required('config')
  app.run(main)
