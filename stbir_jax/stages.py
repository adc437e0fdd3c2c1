"""Multi-stage cross-modal alignment (STBIR module 3).

`config.stages` is an ordered list; each stage names its share of `train.num_steps`, the
parameter groups that train (the rest stay bit-identical), its losses, its query mode and a
learning-rate scale. The default is the paper's three stages: sketch<->photo alignment, photo-side
refinement, text integration. A single stage that trains everything is plain joint training.

Each stage is compiled as its own train step (its masks and losses are static), so a stage
change costs one compilation and nothing inside the step branches on the stage.

config.stages is built here only: `alignment_stages()` (the paper's schedule) or
`joint_stage(train, losses)` (one stage for the whole run: module 3 off).
"""

import copy
import dataclasses
import math

import ml_collections

from stbir_jax import query_modes

MODEL_GROUPS = ('sketch', 'photo', 'text', 'fusion', 'temperature')
PARAM_GROUPS = MODEL_GROUPS + ('prototypes',)
LOSSES = ('contrastive', 'triplet', 'prototype', 'single_modality')
# config.optim.schedule: the learning-rate schedule per stage or over the run
# (train_step.learning_rate).
LR_SCHEDULES = ('stage', 'run')

# The paper's schedule (alignment_stages): sketch <-> photo alignment, photo-side refinement
# at half the learning rate, then text integration on sketch+text queries.
PAPER_SCHEDULE = (
    dict(name='sketch_photo', fraction=0.4, train=['sketch', 'photo', 'temperature'],
         losses=['contrastive', 'triplet'], query='sketch', lr_scale=1.0),
    dict(name='photo_refine', fraction=0.2, train=['photo', 'temperature', 'prototypes'],
         losses=['contrastive', 'triplet', 'prototype'], query='sketch', lr_scale=0.5),
    dict(name='text_integration', fraction=0.4,
         train=['sketch', 'photo', 'text', 'fusion', 'temperature', 'prototypes'],
         losses=['contrastive', 'triplet', 'prototype', 'single_modality'],
         query='sketch+text', lr_scale=1.0),
)

# Module 3 with the colour signal the paper's schedule lacks from scratch (docs/results.md): each
# modality is aligned with the photo first, sketch<->photo and text<->photo at once (the
# single-modality InfoNCE terms, so the photo tower learns shape and colour together), then the
# fused query is integrated with every loss.
MODALITY_FIRST_SCHEDULE = (
    dict(name='modality_photo', fraction=0.5,
         train=['sketch', 'photo', 'text', 'fusion', 'temperature'],
         losses=['single_modality'], query='sketch+text', lr_scale=1.0),
    dict(name='text_integration', fraction=0.5,
         train=['sketch', 'photo', 'text', 'fusion', 'temperature', 'prototypes'],
         losses=['contrastive', 'triplet', 'prototype', 'single_modality'],
         query='sketch+text', lr_scale=1.0),
)


@dataclasses.dataclass(frozen=True)
class Stage:
  index: int
  name: str
  start: int          # first global step of the stage
  end: int            # one past its last step
  train: tuple[str, ...]
  losses: tuple[str, ...]
  query: str
  lr_scale: float

  @property
  def num_steps(self) -> int:
    return self.end - self.start


class StageError(ValueError):
  pass


def alignment_stages(schedule=PAPER_SCHEDULE) -> list:
  """A multi-stage cross-modal alignment schedule (STBIR module 3) as config.stages; by default
  the paper's: sketch <-> photo, then photo-side refinement, then text integration
  (PAPER_SCHEDULE; `fraction` of train.num_steps each, the last stage takes the remainder)."""
  return [ml_collections.ConfigDict(copy.deepcopy(s)) for s in schedule]


def joint_stage(train, losses, *, name: str = 'joint', query: str = 'sketch+text'):
  """One stage for the whole run (module 3 off): the groups `train` with `losses` from the first
  step, on `query` queries."""
  return ml_collections.ConfigDict({'name': name, 'fraction': 1.0, 'train': list(train),
                                    'losses': list(losses), 'query': query, 'lr_scale': 1.0})


def param_groups(config) -> tuple[str, ...]:
  """The parameter groups of a run: the model's, and the category prototypes where learned."""
  if config.category.enabled and config.category.learn_prototypes:
    return PARAM_GROUPS
  return MODEL_GROUPS


def build_stages(config) -> list[Stage]:
  """Turns config.stages into step ranges covering [0, train.num_steps); validates every field."""
  specs = list(config.stages)
  total = int(config.train.num_steps)
  if not specs:
    raise StageError('config.stages is empty: give at least one stage (see configs/base.py).')
  fractions = [float(s.fraction) for s in specs]
  if any(f <= 0 for f in fractions):
    raise StageError(f'config.stages fractions must be > 0, got {fractions}.')
  if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
    raise StageError(f'config.stages fractions must sum to 1, got {fractions} '
                     f'(sum {sum(fractions):.4f}).')
  groups = param_groups(config)
  stages, start = [], 0
  for i, spec in enumerate(specs):
    where = f'config.stages[{i}] ({spec.name!r})'
    for group in spec.train:
      if group not in groups:
        raise StageError(f'{where}.train names {group!r}, which is not a parameter group; '
                         f'valid groups: {", ".join(groups)}.')
    for loss in spec.losses:
      if loss not in LOSSES:
        raise StageError(f'{where}.losses names {loss!r}; valid losses: {", ".join(LOSSES)}.')
    if 'prototype' in spec.losses and not config.category.enabled:
      raise StageError(f'{where} uses the prototype loss but config.category.enabled is False; '
                       'remove it from the stage or enable category knowledge.')
    if spec.query not in query_modes.MODES:
      raise StageError(f'{where}.query is {spec.query!r}; valid: {", ".join(query_modes.MODES)}.')
    if not spec.train:
      raise StageError(f'{where}.train is empty: a stage must train something.')
    end = total if i == len(specs) - 1 else start + int(round(total * fractions[i]))
    if end <= start:
      raise StageError(f'{where} gets no steps with train.num_steps={total}; raise num_steps or '
                       'its fraction.')
    stages.append(Stage(i, str(spec.name), start, end, tuple(spec.train), tuple(spec.losses),
                        str(spec.query), float(spec.lr_scale)))
    start = end
  return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
  """The stage that owns global step `step` (the last one past the end)."""
  for stage in stages:
    if step < stage.end:
      return stage
  return stages[-1]
