"""Every check of a config before a run touches its workdir: `validate_config(config, ...)`.
`--config.train.batch_size=-8` must fail with a message naming the key, not in Grain after
config.json was written.

  check_known_keys   no key the defaults lack (a typo would be silently ignored)
  check_fields       the value of every field on its own (type, sign, range, choice; the rules
                     are stbir_jax/config_rules.py's), then the sections whose owners check
                     them: the curriculum's kind and buckets (curriculum.check_config, which
                     has degradations.check_buckets check every bucket) and the evaluators'
                     sections config.evals.<name> (evaluate.check_sections)
  validate_config    both, then the cross-field checks (divisibility of the batch, gradient
                     accumulation, the stage schedule)

`FIELDS` has a rule for every leaf of config_defaults.py except those in `CHECKED_ELSEWHERE` (lists
and sections with their own checks in validate_config, their owner's module, stages.build_stages
or pipeline.bad_record_policy); tests/config_history_test.py keeps the two lists complete. What
may change when a run resumes is run_config.py's.
"""

from __future__ import annotations

import difflib

import ml_collections

from stbir_jax import config_defaults, curriculum, evaluate, losses, stages
from stbir_jax.config_rules import (
  COUNT,
  FRACTION,
  NON_NEGATIVE,
  POSITIVE,
  POSITIVE_NUMBER,
  boolean,
  choice,
  integer,
  is_int,
  name,
  names,
  number,
  string,
)
from stbir_jax.data import names as data_names
from stbir_jax.data import pipeline
from stbir_jax.models import aligner, canonical, fusion, layers, stbir, text


class ConfigError(ValueError):
  """A config that cannot run; the message names the key."""


NAN_POLICIES = ('stop', 'skip')
# Keys a config may lack, read with a default (models/layers.option): not unknown where present.
OPTIONAL_KEYS = ('model.text.max_positions', 'model.text.projection_size')
# Optional image towers: present only in the configs that use them, with a tower's keys.
OPTIONAL_TOWERS = {'model.photo_text': 'photo'}


def mesh_axis(v):
  if not is_int(v) or not (v == -1 or v >= 1):
    return 'an integer >= 1, or -1 for all remaining devices'


def prompt(v):
  if not isinstance(v, str) or v.count('{}') != 1:
    return "a string with one '{}' where the category name goes"


_IMAGE_TOWER = {'kind': choice(*stbir.IMAGE_KINDS), 'depth': POSITIVE, 'width': POSITIVE,
                'norm': name, 'stem_pool': boolean, 'head_width': COUNT, 'patch_size': POSITIVE,
                'hidden': POSITIVE, 'layers': POSITIVE, 'heads': POSITIVE, 'mlp_dim': POSITIVE,
                'pool': name, 'init': string}

FIELDS = {
    'data.name': name,
    'data.configs': names(),
    'data.data_dir': string,
    'data.resolution': integer(8),
    'data.max_text_len': integer(2),
    'data.tokenizer': name,
    'data.num_workers': COUNT,
    'data.family_group': POSITIVE,
    'data.synth.train_families': POSITIVE,
    'data.synth.validation_families': COUNT,
    'data.synth.test_families': POSITIVE,
    'data.synth.structural_variants': POSITIVE,
    'data.synth.appearance_variants': POSITIVE,
    'data.synth.sketches_per_instance': POSITIVE,
    'data.synth.texts_per_instance': POSITIVE,
    'data.synth.seed': integer(0),
    'model.embed_dim': POSITIVE,
    'model.dtype': choice(*layers.DTYPES),
    'model.remat': lambda v: None if isinstance(v, bool) else choice(*layers.REMAT_POLICIES)(v),
    **{f'model.{side}.{k}': rule
       for side in ('sketch', 'photo', 'photo_text') for k, rule in _IMAGE_TOWER.items()},
    'model.text.kind': choice(*text.KINDS),
    'model.text.vocab_size': POSITIVE,
    'model.text.hidden': POSITIVE,
    'model.text.layers': POSITIVE,
    'model.text.heads': POSITIVE,
    'model.text.mlp_dim': POSITIVE,
    'model.text.pool': name,
    'model.text.init': string,
    'model.text.max_positions': POSITIVE,
    'model.text.projection_size': COUNT,
    'model.fusion.kind': choice(*fusion.KINDS),
    'model.fusion.hidden': POSITIVE,
    'model.fusion.layers': COUNT,
    'model.fusion.heads': POSITIVE,
    'model.fusion.mlp_dim': POSITIVE,
    'model.fusion.normalize': boolean,
    'model.fusion.photo_towers': choice(1, 2),
    'model.fusion.sketch_weight': number(0.0, 1.0),
    'model.fusion.calibrate': boolean,
    'model.sketch_centre': boolean,
    'model.canonical_frame': choice(*canonical.FRAMES),
    'model.sketch_align': boolean,
    'model.sketch_align_learns': choice(*aligner.LEARNS),
    'loss.kind': choice(*losses.CONTRASTIVE_KINDS),
    'loss.init_logit_bias': number(),
    'loss.contrastive': NON_NEGATIVE,
    'loss.triplet': NON_NEGATIVE,
    'loss.triplet_margin': NON_NEGATIVE,
    'loss.triplet_mining': choice(*losses.TRIPLET_MINING),
    'loss.triplet_queries': choice(*losses.TRIPLET_QUERIES),
    'loss.init_temperature': POSITIVE_NUMBER,
    'loss.learn_temperature': boolean,
    'loss.prototype': NON_NEGATIVE,
    'loss.consistency': NON_NEGATIVE,
    'loss.sketch_structure_only': boolean,
    'loss.gallery_from_clean_queries': boolean,
    'loss.clean_pairs': NON_NEGATIVE,
    'loss.align_jitter': NON_NEGATIVE,
    'loss.distill': NON_NEGATIVE,
    'loss.distill_temperature': POSITIVE_NUMBER,
    'loss.single_modality': NON_NEGATIVE,
    'curriculum.competence_start': FRACTION,
    'curriculum.competence_steps': COUNT,
    'curriculum.ema': FRACTION,
    'curriculum.temperature': POSITIVE_NUMBER,
    'curriculum.min_weight': FRACTION,
    'curriculum.clean_share': FRACTION,
    'curriculum.eval_seed': integer(0),
    'category.enabled': boolean,
    'category.prompt': prompt,
    'category.learn_prototypes': boolean,
    'category.margin': NON_NEGATIVE,
    'category.temperature': POSITIVE_NUMBER,
    'category.hard_negative_weight': NON_NEGATIVE,
    'train.batch_size': POSITIVE,
    'train.num_steps': POSITIVE,
    'train.seed': integer(0),
    'train.pair_shift': number(0, 0.5),
    'train.pair_shift_after_align': boolean,
    'train.init_from': string,
    'train.init_from_step': integer(-1),
    'train.pair_warp': number(0, 0.5),
    'train.modality_dropout': number(0, 0.5),   # sketch or text, each with this probability
    'train.log_every': POSITIVE,
    'train.checkpoint_every': POSITIVE,
    'train.keep_checkpoints': POSITIVE,
    'optim.lr': NON_NEGATIVE,
    'optim.warmup_steps': COUNT,
    'optim.weight_decay': NON_NEGATIVE,
    'optim.clip_norm': POSITIVE_NUMBER,
    'optim.b1': number(0, 1, high_open=True),
    'optim.b2': number(0, 1, high_open=True),
    'optim.eps': NON_NEGATIVE,
    'optim.schedule': choice(*stages.LR_SCHEDULES),
    'mesh.data': mesh_axis,
    'mesh.fsdp': mesh_axis,
    'mesh.model': mesh_axis,
}

# Leaves checked by their own code: validate_config (grad accumulation, lr scales),
# curriculum.check_config (kind; the buckets: degradations.check_buckets), stages.build_stages
# (the schedule), pipeline.bad_record_policy, evaluate.check_sections (the evaluator sections).
CHECKED_ELSEWHERE = ('variant', 'data.on_bad_record', 'curriculum.kind', 'curriculum.buckets',
                     'train.nan_policy', 'train.grad_accum_steps', 'optim.group_lr_scale',
                     'stages', 'evals')

# Attention splits `hidden` over `heads`.
_HEADS_DIVIDE = (('model.sketch', ('vit', 'clip_vit')), ('model.photo', ('vit', 'clip_vit')),
                 ('model.photo_text', ('vit', 'clip_vit')), ('model.text', None),
                 ('model.fusion', ('cross_attention',)))


def _get(config, key):
  node = config
  for part in key.split('.'):
    if part not in node:
      return _MISSING
    node = node[part]
  return node


_MISSING = object()


def check_fields(config) -> None:
  """Raises ConfigError naming the first field whose value is outside its rule."""
  for key, rule in FIELDS.items():
    value = _get(config, key)
    if value is _MISSING:
      continue  # an optional key, or a hand-made config; unknown keys are checked elsewhere
    expected = rule(value)
    if expected:
      raise ConfigError(f'config.{key}={value!r}; expected {expected}.')
  if _get(config, 'curriculum') is not _MISSING:
    try:  # the kind and the bucket table: curriculum.py's checks, not run while tracing
      curriculum.check_config(config.curriculum)
    except curriculum.CurriculumError as e:
      raise ConfigError(str(e)) from None
  if _get(config, 'evals') is not _MISSING:
    try:  # the evaluators' sections: names, keys and fields, evaluate.py's checks
      evaluate.check_sections(config)
    except evaluate.EvaluatorError as e:
      raise ConfigError(str(e)) from None
  for where, kinds in _HEADS_DIVIDE:
    tower = _get(config, where)
    if tower is _MISSING or (kinds is not None and tower.get('kind') not in kinds):
      continue
    if 'hidden' in tower and 'heads' in tower and tower.hidden % tower.heads:
      raise ConfigError(f'config.{where}.hidden={tower.hidden} is not divisible by '
                       f'config.{where}.heads={tower.heads}; attention splits hidden over heads.')


# ---------------------------------------------------------------------------- cross-field checks


def validate_config(config, num_processes: int = 1, data_parallel: int = 1) -> None:
  """Fails before any compute on combinations that cannot run, saying what to change."""
  check_known_keys(config, default_config(config))
  check_fields(config)  # each field's own type and range
  batch = config.train.batch_size
  if batch % data_parallel:  # the mesh spans every process, so this is the global size
    raise ConfigError(f'train.batch_size={batch} is not divisible by the data-parallel size '
                      f'{data_parallel} (mesh data x fsdp); use a multiple of it.')
  if batch % num_processes:
    raise ConfigError(f'train.batch_size={batch} is not divisible by the {num_processes} '
                      'processes; use a multiple of it.')
  if config.data.family_group < 1 or batch % config.data.family_group:
    raise ConfigError(f'train.batch_size={batch} must be a multiple of data.family_group='
                      f'{config.data.family_group}.')
  if config.loss.kind not in losses.CONTRASTIVE_KINDS:
    raise ConfigError(f'loss.kind={config.loss.kind!r}; valid: '
                      f'{", ".join(losses.CONTRASTIVE_KINDS)}.')
  if config.loss.sketch_structure_only and config.data.name != data_names.SYNTH:
    raise ConfigError(f'loss.sketch_structure_only=True needs STBIR-Synth ground truth (which '
                      f'photos share a structure); data.name={config.data.name!r}.')
  for field in ('clean_pairs', 'distill'):
    if (config.loss[field] and config.curriculum.kind == 'none'
        and not config.train.modality_dropout):
      raise ConfigError(f'loss.{field}={config.loss[field]!r} scores each query before the '
                        'curriculum and the modality dropout degrade it, but neither is on '
                        '(curriculum.kind="none", train.modality_dropout=0): every query is '
                        f'clean already. Set loss.{field}=0, or turn a degradation on.')
  if config.loss.align_jitter and not config.model.sketch_align:
    raise ConfigError(f'loss.align_jitter={config.loss.align_jitter!r} trains the sketch aligner, '
                      'and the model has none: set model.sketch_align=True, or '
                      'loss.align_jitter=0.')
  if config.model.sketch_align_learns == 'jitter' and not config.loss.align_jitter:
    raise ConfigError("model.sketch_align_learns='jitter' trains the sketch aligner by "
                      'loss.align_jitter alone, which is 0: nothing would train it. Set '
                      "loss.align_jitter > 0, or model.sketch_align_learns='both'.")
  if config.train.pair_shift_after_align and not (config.model.sketch_align
                                                 and config.train.pair_shift):
    raise ConfigError('train.pair_shift_after_align=True moves each sketch by its pair shift '
                      'after the sketch aligner, but '
                      + ('model.sketch_align=False: there is no aligner. Set model.sketch_align'
                         '=True' if not config.model.sketch_align else
                         'train.pair_shift=0: there is no pair shift. Set train.pair_shift > 0')
                      + ', or train.pair_shift_after_align=False.')
  if config.train.pair_shift_after_align and config.train.pair_warp:
    raise ConfigError(f'train.pair_shift_after_align=True and train.pair_warp='
                      f'{config.train.pair_warp!r}: the pair warp would move the sketch before '
                      'its pair shift and the photo after it. Set train.pair_warp=0, or '
                      'train.pair_shift_after_align=False.')
  if config.train.nan_policy not in NAN_POLICIES:
    raise ConfigError(f'train.nan_policy={config.train.nan_policy!r}; valid: '
                      f'{", ".join(NAN_POLICIES)}.')
  _validate_grad_accum(batch, data_parallel, config.train.grad_accum_steps)
  for group, scale in config.optim.group_lr_scale.items():
    if group not in stages.PARAM_GROUPS or not scale >= 0:
      raise ConfigError(f'optim.group_lr_scale.{group}={scale!r}; expected a scale >= 0 for each '
                        f'parameter group ({", ".join(stages.PARAM_GROUPS)}).')
  bucket_names = [b.name for b in config.curriculum.buckets]
  if not bucket_names or bucket_names[0] != 'clean':
    raise ConfigError('curriculum.buckets must start with the "clean" bucket, got '
                      f'{bucket_names}.')
  try:
    curriculum.check_admits_a_bucket(config.curriculum, config.train.num_steps)
  except curriculum.CurriculumError as e:
    raise ConfigError(str(e)) from None
  try:
    pipeline.bad_record_policy(config.data)
  except pipeline.DataError as e:
    raise ConfigError(str(e)) from e
  stages.build_stages(config)


def default_config(config):
  """The defaults `config` is checked against (config_defaults.py, whose keys every variant of
  configs/base.py shares), or None for a config without a variant (built by hand)."""
  if 'variant' not in config:
    return None
  return config_defaults.get_config()


def check_known_keys(config, defaults, where: str = 'config') -> None:
  """Raises on a key that `defaults` lacks: a typo (train.checkpoint_evry) would otherwise be
  silently ignored while the real key keeps its default."""
  if defaults is None:
    return
  for key, value in config.items():
    path = f'{where}.{key}'
    if path == 'config.evals':
      continue  # each evaluator's own keys: evaluate.check_sections
    if key not in defaults:
      dotted = path.removeprefix('config.')
      if dotted in OPTIONAL_KEYS:
        continue
      if dotted in OPTIONAL_TOWERS:
        check_known_keys(value, defaults[OPTIONAL_TOWERS[dotted]], path)
        continue
      close = difflib.get_close_matches(key, list(defaults.keys()), n=1)
      hint = f' Did you mean {where}.{close[0]}?' if close else ''
      raise ConfigError(f'Unknown config key {path}={value!r}: the defaults '
                        f'(stbir_jax/config_defaults.py) have no such key, so it would be '
                        f'ignored.{hint}')
    known = defaults[key]
    if isinstance(value, (dict, ml_collections.ConfigDict)) and isinstance(
        known, (dict, ml_collections.ConfigDict)):
      check_known_keys(value, known, path)
    elif isinstance(value, (list, tuple)) and known and all(
        isinstance(k, (dict, ml_collections.ConfigDict)) for k in known):
      # A list of records (stages, curriculum buckets): every item may use any of their keys.
      fields = ml_collections.ConfigDict({f: None for k in known for f in k})
      for i, item in enumerate(value):
        if isinstance(item, (dict, ml_collections.ConfigDict)):
          check_known_keys(item, fields, f'{path}[{i}]')


def _validate_grad_accum(batch: int, data_parallel: int, accum) -> None:
  if not isinstance(accum, int) or isinstance(accum, bool) or accum < 1:
    raise ConfigError(f'train.grad_accum_steps={accum!r}; expected an integer >= 1.')
  if batch % accum:
    raise ConfigError(f'train.batch_size={batch} is not divisible by train.grad_accum_steps='
                      f'{accum}; use a batch size that is a multiple of it.')
  per_device = batch // data_parallel
  if per_device % accum:
    # Micro-batch j takes rows j, j+k, j+2k, ... so that every device holds a share of every
    # micro-batch; with an uneven share some devices would idle while the others compute.
    raise ConfigError(f'train.batch_size={batch} over the data-parallel size {data_parallel} '
                      f'gives {per_device} rows per device, not divisible by '
                      f'train.grad_accum_steps={accum}; use a batch size that is a multiple of '
                      f'{data_parallel * accum}.')
