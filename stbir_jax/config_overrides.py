"""Command-line overrides of list-valued config fields.

ml_collections parses `--config.FIELD=VALUE` by the field's current type and has no parser for
lists, which our configs use for names (data.configs, evals.<name>.modes, ...). Importing
this module registers one, so `--config.data.configs='("chairs",)'`,
`--config.evals.retrieval.modes='["sketch"]'` or `--config.evals.robustness.buckets=clean,severe`
replaces the list. Imported by every program that defines a config flag (stbir_jax.main,
stbir_jax.ablate).
"""

import ast

from absl import flags
from ml_collections import config_flags


class ListParser(flags.ArgumentParser):
  """A Python literal list or tuple (or a single value) -> list."""

  def parse(self, argument):
    if isinstance(argument, (list, tuple)):
      return list(argument)
    try:
      value = ast.literal_eval(argument)
    except (ValueError, SyntaxError):
      if argument.lstrip()[:1] in ('(', '[', '"', "'"):
        raise ValueError(f'{argument!r}: expected a list such as \'("a", "b")\', '
                         '\'["a", "b"]\' or a,b') from None
      return [item.strip() for item in argument.split(',') if item.strip()]  # a,b as in absl
    return list(value) if isinstance(value, (list, tuple)) else [value]

  def flag_type(self):
    return 'list'


config_flags.register_flag_parser_for_type(list, ListParser())
