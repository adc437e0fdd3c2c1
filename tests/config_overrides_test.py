"""--config.FIELD overrides of list-valued fields, as the docs show them."""

import pytest
from absl import flags
from ml_collections import config_flags

from stbir_jax import config_checks, config_overrides


def _parse(*overrides):
  argv = ['prog', '--config=configs/base.py:demo', *overrides]
  values = flags.FlagValues()
  # Overrides are found in the command line given as sys_argv (sys.argv in a program).
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  return values.config


def test_list_fields_are_replaced_from_a_tuple_or_list_literal():
  config = _parse("--config.data.configs=('chairs',)",
                  '--config.evals.retrieval.modes=["sketch", "text"]',
                  '--config.evals.robustness.modes=sketch,text',
                  '--config.evals.robustness.buckets=severe', '--config.train.batch_size=32')
  assert config.data.configs == ['chairs']
  assert config.evals.retrieval.modes == ['sketch', 'text']
  assert config.evals.robustness.modes == ['sketch', 'text']  # a,b as absl lists
  assert config.evals.robustness.buckets == ['severe']
  assert config.train.batch_size == 32


def test_untouched_lists_keep_their_defaults():
  config = _parse()
  assert config.data.configs == ['shoes']
  assert list(config.evals) == ['retrieval', 'robustness']
  assert config.evals.robustness.buckets == ['clean', 'moderate', 'severe', 'no_sketch', 'no_text']


def test_one_flag_runs_no_evaluator_and_another_sets_one_evaluators_schedule():
  config = _parse('--config.evals={}')  # the shell's --config.evals='{}'
  assert list(config.evals) == []
  config_checks.validate_config(config)
  config = _parse('--config.evals.robustness.every_steps=500')
  assert (config.evals.retrieval.every_steps, config.evals.robustness.every_steps) == (1500, 500)


def test_a_bad_list_literal_is_named():
  with pytest.raises(ValueError, match=r"expected a list such as"):
    config_overrides.ListParser().parse('("chairs",')
