"""The rules a config field is checked by: each takes the value and returns None when it is
valid, or what was expected ('an integer >= 1') for the error message that names the key.

The modules that own config fields build their checks from these: config_checks.FIELDS (the
fields of config_defaults.py) and each evaluator's section rules (stbir_jax/evaluate.py).
"""

import math
import numbers


def is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


def integer(low=None):
  def check(v):
    if not is_int(v) or (low is not None and v < low):
      return 'an integer' + (f' >= {low}' if low is not None else '')
  return check


def number(low=None, high=None, *, low_open=False, high_open=False):
  """A real number in [low, high] (an open end with low_open/high_open)."""
  def check(v):
    ok = is_number(v) and not math.isnan(v)
    if ok and low is not None:
      ok = v > low if low_open else v >= low
    if ok and high is not None:
      ok = v < high if high_open else v <= high
    if not ok:
      bounds = []
      if low is not None:
        bounds.append(f'{">" if low_open else ">="} {low}')
      if high is not None:
        bounds.append(f'{"<" if high_open else "<="} {high}')
      return 'a number' + (' ' + ' and '.join(bounds) if bounds else '')
  return check


def choice(*valid):
  def check(v):
    if v not in valid:
      return f'one of {", ".join(map(repr, valid))}'
  return check


def boolean(v):
  if not isinstance(v, bool):
    return 'True or False'


def string(v):
  if not isinstance(v, str):
    return 'a string'


def name(v):
  if not isinstance(v, str) or not v:
    return 'a non-empty string'


def names(*valid):
  def check(v):
    if (not isinstance(v, (list, tuple)) or not v
        or not all(isinstance(x, str) and x and (not valid or x in valid) for x in v)):
      return 'a non-empty list of ' + (f'names from {", ".join(valid)}' if valid else 'names')
  return check


POSITIVE = integer(1)
COUNT = integer(0)
FRACTION = number(0, 1)
NON_NEGATIVE = number(0)
POSITIVE_NUMBER = number(0, low_open=True)
