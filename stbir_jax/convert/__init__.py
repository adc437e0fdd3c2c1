"""Pretrained Hugging Face weights -> stbir_jax towers (see docs/pretrained.md).

  cfg = tower_config_from_hf('openai/clip-vit-base-patch16', 'vision')   # config.model.photo
  params = init_from_pretrained(config, params)   # after model.init; loads every `init` source
"""

from stbir_jax.convert.core import GROUPS
from stbir_jax.convert.core import TOWERS
from stbir_jax.convert.core import image_size
from stbir_jax.convert.core import init_from_pretrained
from stbir_jax.convert.core import load_converted
from stbir_jax.convert.core import load_pretrained
from stbir_jax.convert.core import load_projection
from stbir_jax.convert.core import load_tower_params
from stbir_jax.convert.core import match_params
from stbir_jax.convert.core import merge_pretrained
from stbir_jax.convert.core import save_converted
from stbir_jax.convert.core import supported_model_types
from stbir_jax.convert.core import tower_config_from_hf
from stbir_jax.convert.hub import BUNDLED_PREFIX
from stbir_jax.convert.hub import ConvertError
from stbir_jax.convert.hub import resolve
