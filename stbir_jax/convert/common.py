"""Name-mapping rules shared by the architecture converters.

A rule maps a torch state-dict name (relative to the tower's prefix, e.g. after 'vision_model.')
to a '/'-joined path in our Flax tree, with a transform of the array:

  torch Linear weight (out, in)            -> Dense kernel (in, out)          'linear'
  torch Conv2d weight (out, in, kh, kw)    -> Conv kernel (kh, kw, in, out)   'conv'
  LayerNorm weight/bias (or legacy gamma/beta) -> scale/bias                  'same'
  Embedding weight (n, d)                  -> embedding (n, d)                'same'
"""

import re

import numpy as np

from stbir_jax.convert.hub import ConvertError

TRANSFORMS = {
    'same': lambda x: x,
    'linear': lambda x: x.T,
    'conv': lambda x: x.transpose(2, 3, 1, 0),
    'vector': lambda x: x.reshape(-1),          # (1, 1, H) -> (H,)
    'first': lambda x: x[0],                    # (1, N, H) -> (N, H)
}
# ours -> torch, up to a reshape to the torch shape (which restores the dropped leading 1s).
INVERSE_TRANSFORMS = {
    'same': lambda x: x,
    'linear': lambda x: x.T,
    'conv': lambda x: x.transpose(3, 2, 0, 1),
    'vector': lambda x: x,
    'first': lambda x: x,
}


def linear(hf: str, ours: str):
  return [(hf + r'\.weight', ours + '/kernel', 'linear'), (hf + r'\.bias', ours + '/bias', 'same')]


def norm(hf: str, ours: str):
  return [(hf + r'\.(?:weight|gamma)', ours + '/scale', 'same'),
          (hf + r'\.(?:bias|beta)', ours + '/bias', 'same')]


def embed(hf: str, ours: str):
  return [(hf + r'\.weight', ours + '/embedding', 'same')]


def find_prefix(state: dict, anchor: str, prefer=(), where: str = '') -> str:
  """The prefix before `anchor` (a name that every checkpoint of this tower holds)."""
  prefixes = sorted(k[:-len(anchor)] for k in state if k.endswith(anchor)
                    and (len(k) == len(anchor) or k[-len(anchor) - 1] == '.'))
  for p in prefer:
    if p in prefixes:
      return p
  if len(prefixes) == 1:
    return prefixes[0]
  if not prefixes:
    sample = ', '.join(sorted(state)[:8])
    raise ConvertError(f'{where}: no tensor named *{anchor} in the checkpoint; is it the '
                       f'architecture its config.json says? First names: {sample}')
  raise ConvertError(f'{where}: several towers hold {anchor} (prefixes {prefixes}); cannot tell '
                     'which to load.')


def map_names(names, prefix: str, rules, ignore=()):
  """-> ({torch name: (our path, transform name)}, unexpected [names under prefix that no rule
  maps]). The one name table, read both ways: apply_rules (HF -> ours) and to_transformers
  (ours -> HF, with INVERSE_TRANSFORMS)."""
  compiled = [(re.compile(p + '$'), out, t) for p, out, t in rules]
  ignored = [re.compile(p + '$') for p in ignore]
  mapping, unexpected = {}, []
  for name in names:
    if not name.startswith(prefix):
      continue
    rel = name[len(prefix):]
    for pattern, out, transform in compiled:
      m = pattern.match(rel)
      if m:
        mapping[name] = (m.expand(out), transform)
        break
    else:
      if not any(p.match(rel) for p in ignored):
        unexpected.append(name)
  return mapping, sorted(unexpected)


def apply_rules(state: dict, prefix: str, rules, ignore=()):
  """-> (flat {our path: array}, unexpected [torch names under prefix that no rule maps])."""
  mapping, unexpected = map_names(state, prefix, rules, ignore)
  flat = {path: np.ascontiguousarray(TRANSFORMS[t](state[name]))
          for name, (path, t) in mapping.items()}
  return flat, unexpected


def require(where: str, key: str, value, expected) -> None:
  """A config value our tower hard-wires (activation, eps...) must match the checkpoint's."""
  ok = (np.isclose(value, expected, rtol=1e-3, atol=0) if isinstance(expected, float)
        and isinstance(value, (int, float)) else value == expected)
  if not ok:
    raise ConvertError(f'{where}: config {key}={value!r}, but our tower computes with '
                       f'{key}={expected!r}; this checkpoint is not supported as is.')
