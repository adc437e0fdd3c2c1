"""What an evaluator is given besides the model: its own config section and the data it reads.

`evaluator_section(config, fields, name)` copies the fields an evaluator reads (its
`section_fields`) out of the run config into a section of their own, as big_vision's
`config.evals.<name>` are: today from the shared config.eval, plus `datasets`
(config.data.configs), `eval_seed` (config.curriculum.eval_seed) and robustness's `buckets` (the
curriculum's bucket sections named by config.eval.robustness_buckets). `EvalData(config)` gives
the batches of a dataset's split and the degradation of queries by a bucket, so an evaluator
never reads the run config itself.
"""

from collections.abc import Iterator

import ml_collections

# Where a section field comes from in the run config, when not config.eval.<field>.
_SOURCES = {'datasets': 'data.configs', 'buckets': 'eval.robustness_buckets',
            'eval_seed': 'curriculum.eval_seed'}
_DEFAULTS = {'gallery_scope': 'all'}  # runs recorded before the field existed


class EvaluatorError(ValueError):
  pass


def evaluator_section(config, fields, name: str) -> ml_collections.ConfigDict:
  """The section of evaluator `name` holding `fields`, copied from the run config (so an
  evaluator never sees or changes the rest of it)."""
  section = ml_collections.ConfigDict()
  for field in fields:
    group, key = _SOURCES.get(field, f'eval.{field}').split('.')
    value = config[group][key] if key in config[group] else _DEFAULTS[field]
    section[field] = list(value) if isinstance(value, (list, tuple)) else value
  if 'buckets' in section:
    section.buckets = [ml_collections.ConfigDict(b.to_dict())
                       for b in _named_buckets(config, section.buckets, name)]
  return section


def _named_buckets(config, names, evaluator: str) -> list:
  defined = [str(b.name) for b in config.curriculum.buckets]
  for bucket in names:
    if bucket not in defined:
      raise EvaluatorError(f'[{evaluator}] config.eval.robustness_buckets names {bucket!r}; '
                           f'buckets in config.curriculum.buckets: {", ".join(defined)}.')
  return [config.curriculum.buckets[defined.index(bucket)] for bucket in names]


def default_data_fns() -> dict:
  """The real data pipeline and degradations (imported lazily: tests inject fakes)."""
  from stbir_jax import degradations  # pylint: disable=g-import-not-at-top
  from stbir_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  def from_config(read):
    """The pipeline takes its part of the config: the data section and the eval batch size."""
    def data_fn(config, dataset, split, **process_rows):
      return read(config.data, dataset, split, batch_size=config.eval.batch_size, **process_rows)
    return data_fn
  return {'eval_gallery': from_config(pipeline.eval_gallery),
          'eval_queries': from_config(pipeline.eval_queries),
          'degrade_queries': degradations.degrade_queries}


class EvalData:
  """What evaluators read, bound to the run config: the batches of a dataset's split (gallery:
  every photo once; queries: every query once; padded batches with a `valid` column) and the
  degradation of queries by a curriculum bucket. `data_fns` replaces the real pipeline and
  degradations (default_data_fns) in tests."""

  def __init__(self, config, data_fns: dict | None = None):
    self._config = config
    self._data_fns = data_fns
    self._attribute_ids = None

  @property
  def fns(self) -> dict:
    if self._data_fns is None:
      self._data_fns = default_data_fns()
    return self._data_fns

  def gallery(self, dataset: str, split: str, **process_rows) -> Iterator[dict]:
    return self.fns['eval_gallery'](self._config, dataset, split, **process_rows)

  def queries(self, dataset: str, split: str, **process_rows) -> Iterator[dict]:
    return self.fns['eval_queries'](self._config, dataset, split, **process_rows)

  def degrade(self, key, batch: dict, bucket: str) -> dict:
    """`batch`'s queries degraded by the curriculum bucket named `bucket` (jit-traceable)."""
    buckets = self._config.curriculum.buckets
    index = [str(b.name) for b in buckets].index(bucket)
    if self._attribute_ids is None:
      from stbir_jax import degradations  # pylint: disable=g-import-not-at-top
      self._attribute_ids = degradations.attribute_token_ids(self._config.data.tokenizer)
    return self.fns['degrade_queries'](key, batch, index, buckets,
                                       attribute_ids=self._attribute_ids)
