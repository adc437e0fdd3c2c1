"""Pretrained Hugging Face weights -> stbir_jax towers (see docs/pretrained.md).

  cfg = tower_config_from_hf('openai/clip-vit-base-patch16', 'vision')   # config.model.photo
  params = init_from_pretrained(config, params)   # after model.init; loads every `init` source
"""

from stbir_jax.convert.core import (
  GROUPS,
  TOWERS,
  image_size,
  init_from_pretrained,
  load_converted,
  load_pretrained,
  load_projection,
  load_tower_params,
  match_params,
  merge_pretrained,
  save_converted,
  supported_model_types,
  tower_config_from_hf,
)
from stbir_jax.convert.hub import BUNDLED_PREFIX, ConvertError, resolve

# The package's public API (docs/pretrained.md): re-exported from core.py and hub.py.
__all__ = [
  'BUNDLED_PREFIX',
  'GROUPS',
  'TOWERS',
  'ConvertError',
  'image_size',
  'init_from_pretrained',
  'load_converted',
  'load_pretrained',
  'load_projection',
  'load_tower_params',
  'match_params',
  'merge_pretrained',
  'resolve',
  'save_converted',
  'supported_model_types',
  'tower_config_from_hf',
]
