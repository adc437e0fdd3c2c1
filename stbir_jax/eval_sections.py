"""What an evaluator is given besides the model: its own config section and the data it reads.

A run's evaluators are the sections of `config.evals`, one per evaluator by its registered name
(big_vision's `config.evals.<name>`), each with its own fields and `every_steps`:

  config.evals.retrieval  = dict(every_steps=..., batch_size=..., split=..., modes=[...],
                                 gallery_scope=...)
  config.evals.robustness = dict(<the same>, buckets=[names of curriculum buckets])
  config.evals.degradations = dict(<robustness's>)  (each degradation of a bucket on its own)

`evaluator_section(config, evaluator)` is the section an evaluator is built with: a copy of its
config section plus the run-wide fields it names in `shared_fields` (SHARED: `datasets` is
config.data.configs, `eval_seed` config.curriculum.eval_seed), with `buckets` resolved to the
curriculum's bucket sections. `check_section` checks a config section against the evaluator's
`section_defaults` (its keys) and `section_rules` (one rule a field, stbir_jax/config_rules.py).
`EvalData(config)` gives the batches of a dataset's split and the degradation of queries by a
bucket, so an evaluator never reads the run config itself.
"""

import copy
from collections.abc import Iterator

import ml_collections

# Each evaluator's section fields at their defaults, by registered name: here, without jax, so
# that configs are built without importing the models. An evaluator class names its entry as
# `section_defaults` (evaluate.EVALUATORS; tests/evaluate_test.py keeps the two in step); a new
# evaluator adds its entry here and its class there.
SECTION_DEFAULTS = {
    'retrieval': dict(every_steps=2000, batch_size=256, split='test',
                      modes=['sketch', 'text', 'sketch+text'], gallery_scope='all'),
}
SECTION_DEFAULTS['robustness'] = dict(
    SECTION_DEFAULTS['retrieval'], buckets=['clean', 'moderate', 'severe', 'no_sketch', 'no_text'])
SECTION_DEFAULTS['degradations'] = dict(SECTION_DEFAULTS['retrieval'],
                                        buckets=['moderate', 'severe'])

# Run-wide fields an evaluator may name in its shared_fields -> where they are in the run config.
SHARED = {'datasets': ('data', 'configs'), 'eval_seed': ('curriculum', 'eval_seed')}


class EvaluatorError(ValueError):
  pass


def _plain(value):
  return list(value) if isinstance(value, (list, tuple)) else value


def evaluator_section(config, own, evaluator) -> ml_collections.ConfigDict:
  """The section `evaluator` (a class with name, shared_fields) is built with: its config
  section `own` (config.evals.<name>) and the run-wide fields it shares, copied so that an
  evaluator never sees or changes the rest of the run config."""
  section = ml_collections.ConfigDict({k: _plain(v) for k, v in own.items()})
  for field in evaluator.shared_fields:
    group, key = SHARED[field]
    section[field] = _plain(config[group][key])
  if 'buckets' in section:
    section.buckets = [ml_collections.ConfigDict(b.to_dict())
                       for b in _named_buckets(config, section.buckets, evaluator.name)]
  return section


def _named_buckets(config, names, evaluator: str) -> list:
  defined = [str(b.name) for b in config.curriculum.buckets]
  for bucket in names:
    if bucket not in defined:
      raise EvaluatorError(f'[{evaluator}] config.evals.{evaluator}.buckets names {bucket!r}; '
                           f'buckets in config.curriculum.buckets: {", ".join(defined)}.')
  return [config.curriculum.buckets[defined.index(bucket)] for bucket in names]


def check_section(name: str, own, evaluator) -> None:
  """Raises EvaluatorError naming the first key of config.evals.<name> (`own`) that `evaluator`
  does not know, lacks, or holds a value outside its rule."""
  where = f'config.evals.{name}'
  if not isinstance(own, (dict, ml_collections.ConfigDict)):
    raise EvaluatorError(f'{where}={own!r}; expected a section (a dict of its fields: '
                         f'{", ".join(evaluator.section_defaults)}).')
  for key in own:
    if key not in evaluator.section_defaults:
      raise EvaluatorError(f'Unknown config key {where}.{key}: the {name} evaluator reads '
                           f'{", ".join(evaluator.section_defaults)}.')
  for key, rule in evaluator.section_rules.items():
    if key not in own:
      raise EvaluatorError(f'{where} has no field {key!r}; the {name} evaluator reads '
                           f'{", ".join(evaluator.section_defaults)}.')
    expected = rule(own[key])
    if expected:
      raise EvaluatorError(f'{where}.{key}={own[key]!r}; expected {expected}.')


def default_section(name: str) -> ml_collections.ConfigDict:
  """Evaluator `name`'s section with every field at its default (a copy)."""
  if name not in SECTION_DEFAULTS:
    raise EvaluatorError(f'Unknown evaluator {name!r} (config.evals.{name}); valid evaluators: '
                         f'{", ".join(sorted(SECTION_DEFAULTS))}.')
  return ml_collections.ConfigDict(copy.deepcopy(SECTION_DEFAULTS[name]))


def config_section(config, name: str) -> ml_collections.ConfigDict:
  """config.evals.<name>; for an evaluator the run has no section for, its defaults with the
  fields it shares with the run's first section (so it evaluates the same split, modes, batch
  size and schedule)."""
  if name in config.evals:
    return config.evals[name]
  own = default_section(name)
  for other in config.evals.values():
    own.update({k: _plain(v) for k, v in other.items() if k in own})
    break
  return own


def add_section(config, name: str) -> None:
  """Makes evaluator `name` one of the run's (config.evals.<name>, see config_section)."""
  if name not in config.evals:
    config.evals[name] = config_section(config, name)


def default_data_fns() -> dict:
  """The real data pipeline and degradations (imported lazily: tests inject fakes)."""
  from stbir_jax import degradations  # pylint: disable=g-import-not-at-top
  from stbir_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  def from_config(read):
    """The pipeline takes its part of the config: the data section and the batch size."""
    def data_fn(config, dataset, split, *, batch_size, **process_rows):
      return read(config.data, dataset, split, batch_size=batch_size, **process_rows)
    return data_fn
  return {'eval_gallery': from_config(pipeline.eval_gallery),
          'eval_queries': from_config(pipeline.eval_queries),
          'degrade_queries': degradations.degrade_queries}


class EvalData:
  """What evaluators read, bound to the run config: the batches of a dataset's split (gallery:
  every photo once; queries: every query once; padded batches of `batch_size` rows with a
  `valid` column) and the degradation of queries by a curriculum bucket. `data_fns` replaces the
  real pipeline and degradations (default_data_fns) in tests: eval_gallery and eval_queries are
  called as fn(config, dataset, split, batch_size=..., **process_rows)."""

  def __init__(self, config, data_fns: dict | None = None):
    self._config = config
    self._data_fns = data_fns
    self._attribute_ids = None

  @property
  def fns(self) -> dict:
    if self._data_fns is None:
      self._data_fns = default_data_fns()
    return self._data_fns

  def gallery(self, dataset: str, split: str, batch_size: int, **process_rows) -> Iterator[dict]:
    return self.fns['eval_gallery'](self._config, dataset, split, batch_size=batch_size,
                                    **process_rows)

  def queries(self, dataset: str, split: str, batch_size: int, **process_rows) -> Iterator[dict]:
    return self.fns['eval_queries'](self._config, dataset, split, batch_size=batch_size,
                                    **process_rows)

  def degrade(self, key, batch: dict, bucket: str, extra_buckets=()) -> dict:
    """`batch`'s queries degraded by the bucket named `bucket` (jit-traceable): one of the
    curriculum's, or of `extra_buckets` (bucket dicts), appended to its table so the curriculum's
    buckets keep their indices."""
    buckets = list(self._config.curriculum.buckets) + list(extra_buckets)
    index = [str(b.name) for b in buckets].index(bucket)
    if self._attribute_ids is None:
      from stbir_jax import degradations  # pylint: disable=g-import-not-at-top
      self._attribute_ids = degradations.attribute_token_ids(self._config.data.tokenizer)
    return self.fns['degrade_queries'](key, batch, index, buckets,
                                       attribute_ids=self._attribute_ids)
