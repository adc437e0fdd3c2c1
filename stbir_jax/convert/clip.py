"""HF CLIP (CLIPModel, CLIPVisionModel[WithProjection], CLIPTextModel[WithProjection]) -> our
'clip_vit' image tower (models/vit.py, variant 'clip') and 'clip' text tower (models/text.py).

visual_projection / text_projection (no bias) become the tower's `proj` head (models/stbir.py)
when config.model.embed_dim equals the checkpoint's projection_dim.
"""

from stbir_jax.convert import common

MODEL_TYPES = {'clip': ('vision', 'text'), 'clip_vision_model': ('vision',),
               'clip_text_model': ('text',)}
_ANCHOR = {'vision': 'embeddings.patch_embedding.weight',
           'text': 'embeddings.token_embedding.weight'}
_PREFIX = {'vision': 'vision_model.', 'text': 'text_model.'}
_PROJECTION = {'vision': 'visual_projection.weight', 'text': 'text_projection.weight'}


def _layer_rules(hf_layers: str):
  rules = []
  for p in ('q', 'k', 'v', 'out'):
    rules += common.linear(hf_layers + rf'\.(\d+)\.self_attn\.{p}_proj',
                           rf'encoder/layer_\1/self_attn/{p}_proj')
  rules += common.linear(hf_layers + r'\.(\d+)\.mlp\.fc1', r'encoder/layer_\1/mlp/fc1')
  rules += common.linear(hf_layers + r'\.(\d+)\.mlp\.fc2', r'encoder/layer_\1/mlp/fc2')
  rules += common.norm(hf_layers + r'\.(\d+)\.layer_norm1', r'encoder/layer_\1/layer_norm1')
  rules += common.norm(hf_layers + r'\.(\d+)\.layer_norm2', r'encoder/layer_\1/layer_norm2')
  return rules


VISION_RULES = ([(r'embeddings\.patch_embedding\.weight', 'patch_embedding/kernel', 'conv'),
                 (r'embeddings\.class_embedding', 'class_embedding', 'same'),
                 (r'embeddings\.position_embedding\.weight', 'position_embedding', 'same')]
                + common.norm(r'pre_layrnorm', 'pre_layrnorm')
                + _layer_rules(r'encoder\.layers')
                + common.norm(r'post_layernorm', 'post_layernorm'))
TEXT_RULES = (common.embed(r'embeddings\.token_embedding', 'token_embedding')
              + common.embed(r'embeddings\.position_embedding', 'position_embedding')
              + _layer_rules(r'encoder\.layers')
              + common.norm(r'final_layer_norm', 'final_layer_norm'))
IGNORE = (r'embeddings\.position_ids',)


def sub_config(hf_cfg, tower):
  return getattr(hf_cfg, f'{tower}_config') if hf_cfg.model_type == 'clip' else hf_cfg


def _check(c, where):
  common.require(where, 'hidden_act', c.hidden_act, 'quick_gelu')
  common.require(where, 'layer_norm_eps', float(c.layer_norm_eps), 1e-5)


def tower_config(hf_cfg, tower: str, where: str) -> dict:
  c = sub_config(hf_cfg, tower)
  _check(c, where)
  common_keys = dict(hidden=c.hidden_size, layers=c.num_hidden_layers, heads=c.num_attention_heads,
                     mlp_dim=c.intermediate_size)
  if tower == 'vision':
    common.require(where, 'num_channels', c.num_channels, 3)
    return dict(kind='clip_vit', patch_size=c.patch_size, pool='cls', image_size=c.image_size,
                **common_keys)
  # HF pools the first EOS token, or argmax(ids) for old configs with eos_token_id == 2; with
  # EOS ending every text and padding after it, the first EOS is the last real token.
  pool = 'argmax' if c.eos_token_id == 2 else 'eos'
  return dict(kind='clip', vocab_size=c.vocab_size, pool=pool,
              max_positions=c.max_position_embeddings, **common_keys)


def convert(state: dict, hf_cfg, tower: str, where: str):
  prefix = common.find_prefix(state, _ANCHOR[tower], prefer=(_PREFIX[tower],), where=where)
  rules = VISION_RULES if tower == 'vision' else TEXT_RULES
  return common.apply_rules(state, prefix, rules, IGNORE)


def projection(state: dict, hf_cfg, tower: str):
  """The (in, out) kernel of visual_/text_projection, or None (plain CLIPVisionModel)."""
  names = [k for k in state if k == _PROJECTION[tower] or k.endswith('.' + _PROJECTION[tower])]
  return state[names[0]].T if len(names) == 1 else None
