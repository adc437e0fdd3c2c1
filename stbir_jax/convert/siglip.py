"""HF SigLIP and SigLIP 2 (SiglipModel / Siglip2Model and their vision / text models) -> our
'siglip_vit' image tower (models/vit.py, variant 'siglip') and 'siglip' text tower
(models/text.py).

  vision: patch conv (+ bias), position table without a class token, pre-LN layers (gelu_tanh,
          eps 1e-6), post_layernorm, MAP head (probe + torch nn.MultiheadAttention, whose packed
          in_proj_weight (3H, H) is split here into q/k/v) -> pooled = HF pooler_output.
          SigLIP 2 patchifies in the processor and embeds patches with a Linear over (ph, pw, c)
          vectors: its weight is reshaped to the conv kernel. Its position grid is resized to
          each image's patch grid; at the checkpoint's native grid (image_size = sqrt(num_patches)
          * patch_size) that resize is the identity, which is the one case our fixed-resolution
          tower covers.
  text:   token + position embeddings, pre-LN layers without a causal mask, final_layer_norm,
          last position -> head (Linear with bias) -> HF pooler_output.

SigLIP's joint embedding space is the towers' pooled outputs themselves (no projection), so the
`proj` head a group adds is loaded as the identity when config.model.embed_dim equals the pooled
size (hidden for vision, projection_size for text): the pretrained alignment holds at step 0.
logit_scale / logit_bias are not loaded (config.loss decides the loss and its start values).
"""

import numpy as np

from stbir_jax.convert import clip, common

MODEL_TYPES = {
    'siglip': ('vision', 'text'), 'siglip_vision_model': ('vision',),
    'siglip_text_model': ('text',),
    'siglip2': ('vision', 'text'), 'siglip2_vision_model': ('vision',),
    'siglip2_text_model': ('text',),
}
_ANCHOR = {'vision': 'embeddings.patch_embedding.weight',
           'text': 'embeddings.token_embedding.weight'}
_PREFIX = {'vision': 'vision_model.', 'text': 'text_model.'}
_IN_PROJ = 'head.attention.in_proj_'

VISION_RULES = ([(r'embeddings\.patch_embedding\.weight', 'patch_embedding/kernel', 'conv'),
                 (r'embeddings\.patch_embedding\.bias', 'patch_embedding/bias', 'same'),
                 (r'embeddings\.position_embedding\.weight', 'position_embedding', 'same'),
                 (r'head\.probe', 'head/probe', 'first')]
                + clip._layer_rules(r'encoder\.layers')   # pylint: disable=protected-access
                + common.norm(r'post_layernorm', 'post_layernorm')
                + [r for p in ('q', 'k', 'v', 'out') for r in common.linear(
                    rf'head\.attention\.{p}_proj', f'head/attention/{p}_proj')]
                + common.norm(r'head\.layernorm', 'head/layernorm')
                + common.linear(r'head\.mlp\.fc1', 'head/mlp/fc1')
                + common.linear(r'head\.mlp\.fc2', 'head/mlp/fc2'))
TEXT_RULES = (common.embed(r'embeddings\.token_embedding', 'token_embedding')
              + common.embed(r'embeddings\.position_embedding', 'position_embedding')
              + clip._layer_rules(r'encoder\.layers')   # pylint: disable=protected-access
              + common.norm(r'final_layer_norm', 'final_layer_norm')
              + common.linear(r'head', 'head'))
IGNORE = (r'embeddings\.position_ids',)


def _sub_config(hf_cfg, tower):
  if hf_cfg.model_type in ('siglip', 'siglip2'):
    return getattr(hf_cfg, f'{tower}_config')
  return hf_cfg


def _version2(hf_cfg) -> bool:
  """SigLIP 2 (its model config or a sub-config: 'siglip2', 'siglip2_vision_model', ...)."""
  return hf_cfg.model_type.startswith('siglip2')


def _image_size(c, where):
  if _version2(c):
    side = round(c.num_patches**0.5)
    common.require(where, 'num_patches (a square grid)', c.num_patches, side * side)
    return side * c.patch_size
  size = c.image_size
  if isinstance(size, (list, tuple)):
    common.require(where, 'image_size (square)', size[0], size[1])
    size = size[0]
  return int(size)


def tower_config(hf_cfg, tower: str, where: str) -> dict:
  c = _sub_config(hf_cfg, tower)
  common.require(where, 'hidden_act', c.hidden_act, 'gelu_pytorch_tanh')
  common.require(where, 'layer_norm_eps', float(c.layer_norm_eps), 1e-6)
  common_keys = {'hidden': c.hidden_size, 'layers': c.num_hidden_layers,
                 'heads': c.num_attention_heads, 'mlp_dim': c.intermediate_size}
  if tower == 'vision':
    common.require(where, 'num_channels', c.num_channels, 3)
    common.require(where, 'vision_use_head', c.vision_use_head, True)
    return dict(kind='siglip_vit', patch_size=c.patch_size, pool='map',
                image_size=_image_size(c, where), **common_keys)
  return dict(kind='siglip', vocab_size=c.vocab_size, pool='last',
              max_positions=c.max_position_embeddings, projection_size=c.projection_size,
              **common_keys)


def _unpack(state: dict, prefix: str, hf_cfg, tower: str) -> dict:
  """SigLIP names -> names the rules map: the MAP head's packed q/k/v split in three, SigLIP 2's
  Linear patch embedding as a conv weight (out, in, kh, kw)."""
  state = dict(state)
  for field in ('weight', 'bias'):
    packed = state.pop(prefix + _IN_PROJ + field, None)
    if packed is not None:
      for name, part in zip('qkv', np.split(packed, 3, axis=0), strict=True):
        state[f'{prefix}head.attention.{name}_proj.{field}'] = part
  patch = prefix + _ANCHOR['vision']
  if tower == 'vision' and _version2(hf_cfg) and patch in state and state[patch].ndim == 2:
    p = _sub_config(hf_cfg, tower).patch_size
    w = state[patch]   # (hidden, p * p * 3), inputs ordered (ph, pw, channel)
    state[patch] = w.reshape(w.shape[0], p, p, -1).transpose(0, 3, 1, 2)
  return state


def convert(state: dict, hf_cfg, tower: str, where: str):
  prefix = common.find_prefix(state, _ANCHOR[tower], prefer=(_PREFIX[tower],), where=where)
  state = _unpack(state, prefix, hf_cfg, tower)
  rules = VISION_RULES if tower == 'vision' else TEXT_RULES
  return common.apply_rules(state, prefix, rules, IGNORE)


def projection(state: dict, hf_cfg, tower: str):
  """The identity on the pooled size: SigLIP embeds with the towers' pooled outputs."""
  del state
  c = _sub_config(hf_cfg, tower)
  size = c.hidden_size if tower == 'vision' else c.projection_size
  return np.eye(size, dtype=np.float32)
