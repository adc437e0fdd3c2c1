"""HF ResNet (ResNetModel / ResNetForImageClassification, e.g. microsoft/resnet-50) -> our
'resnet' image tower (models/resnet.py) with norm='affine'.

Each BatchNorm is folded into the per-channel affine norm with its running statistics:
scale = gamma / sqrt(running_var + eps), bias = beta - running_mean * scale (eps 1e-5, torch's
BatchNorm2d default). The classifier head is not loaded; there is no projection.
"""

import collections
import re

import numpy as np

from stbir_jax.convert import common
from stbir_jax.models import resnet as resnet_lib

MODEL_TYPES = {'resnet': ('vision',)}
BN_EPS = 1e-5
_ANCHOR = 'embedder.embedder.convolution.weight'
_BLOCK = r'encoder\.stages\.(\d+)\.layers\.(\d+)\.'
_OUT = r'stage_\1/block_\2/'
_MODULES = [
    (r'embedder\.embedder\.convolution', 'stem/conv'),
    (r'embedder\.embedder\.normalization', 'stem/norm'),
    (_BLOCK + r'layer\.(\d+)\.convolution', _OUT + r'conv_\3'),
    (_BLOCK + r'layer\.(\d+)\.normalization', _OUT + r'norm_\3'),
    (_BLOCK + r'shortcut\.convolution', _OUT + 'shortcut_conv'),
    (_BLOCK + r'shortcut\.normalization', _OUT + 'shortcut_norm'),
]
_BN_FIELDS = ('weight', 'bias', 'running_mean', 'running_var')


def tower_config(hf_cfg, tower: str, where: str) -> dict:
  del tower
  common.require(where, 'hidden_act', hf_cfg.hidden_act, 'relu')
  common.require(where, 'num_channels', hf_cfg.num_channels, 3)
  common.require(where, 'downsample_in_first_stage', hf_cfg.downsample_in_first_stage, False)
  common.require(where, 'downsample_in_bottleneck',
                 getattr(hf_cfg, 'downsample_in_bottleneck', False), False)
  key = (hf_cfg.layer_type, tuple(hf_cfg.depths))
  depths = {v: k for k, v in resnet_lib.DEPTHS.items()}
  if key not in depths:
    valid = ', '.join(f'{d}: {t} {list(n)}' for d, (t, n) in resnet_lib.DEPTHS.items())
    raise common.ConvertError(f'{where}: layer_type={hf_cfg.layer_type!r} with depths='
                              f'{list(hf_cfg.depths)} is not a ResNet our tower builds; valid: '
                              f'{valid}')
  width = hf_cfg.embedding_size
  expansion = 4 if hf_cfg.layer_type == 'bottleneck' else 1
  common.require(where, 'hidden_sizes', list(hf_cfg.hidden_sizes),
                 [width * 2**i * expansion for i in range(4)])
  return dict(kind='resnet', depth=depths[key], width=width, norm='affine', stem_pool=True,
              pool='gap')


def convert(state: dict, hf_cfg, tower: str, where: str):
  del hf_cfg, tower
  prefix = common.find_prefix(state, _ANCHOR, prefer=('', 'resnet.'), where=where)
  modules = [(re.compile(p + '$'), out) for p, out in _MODULES]
  flat, unexpected = {}, []
  norms = collections.defaultdict(dict)
  for name, value in state.items():
    if not name.startswith(prefix):
      continue
    module, _, field = name[len(prefix):].rpartition('.')
    for pattern, out in modules:
      m = pattern.match(module)
      if not m:
        continue
      path, is_conv = m.expand(out), module.endswith('convolution')
      if is_conv and field == 'weight':
        flat[path + '/kernel'] = common.TRANSFORMS['conv'](value)
      elif not is_conv and field in _BN_FIELDS:
        norms[path][field] = value
      elif field != 'num_batches_tracked':
        unexpected.append(name)
      break
    else:
      unexpected.append(name)
  for path, bn in norms.items():
    missing = [f for f in _BN_FIELDS if f not in bn]
    if missing:
      raise common.ConvertError(f'{where}: BatchNorm {path} lacks {missing}; cannot fold it.')
    scale = bn['weight'] / np.sqrt(bn['running_var'] + BN_EPS)
    flat[path + '/scale'] = scale.astype(np.float32)
    flat[path + '/bias'] = (bn['bias'] - bn['running_mean'] * scale).astype(np.float32)
  return flat, sorted(unexpected)


def projection(state, hf_cfg, tower):
  del state, hf_cfg, tower
  return None
