"""HF ViT (ViTModel, e.g. google/vit-base-patch16-224-in21k, facebook/dino-vitb16) -> our 'vit'
image tower (models/vit.py, variant 'vit'). Reads the transformers 5 names (layers.i.attention.
{q,k,v,o}_proj) and the older ones (encoder.layer.i.attention.attention.query ...). HF's tanh
pooler and classifier heads are not loaded; there is no projection.
"""

from stbir_jax.convert import common

MODEL_TYPES = {'vit': ('vision',)}
_ANCHOR = 'embeddings.patch_embeddings.projection.weight'

_NEW = r'(?:encoder\.)?layers?\.(\d+)\.'
_OUT = r'encoder/layer_\1/'
RULES = ([(r'embeddings\.patch_embeddings\.projection\.weight', 'patch_embedding/kernel', 'conv'),
          (r'embeddings\.patch_embeddings\.projection\.bias', 'patch_embedding/bias', 'same'),
          (r'embeddings\.cls_token', 'class_embedding', 'vector'),
          (r'embeddings\.position_embeddings', 'position_embedding', 'first')]
         + common.linear(_NEW + r'attention\.(q|k|v)_proj', _OUT + r'self_attn/\2_proj')
         + common.linear(_NEW + r'attention\.o_proj', _OUT + 'self_attn/out_proj')
         + common.linear(_NEW + r'attention\.attention\.query', _OUT + 'self_attn/q_proj')
         + common.linear(_NEW + r'attention\.attention\.key', _OUT + 'self_attn/k_proj')
         + common.linear(_NEW + r'attention\.attention\.value', _OUT + 'self_attn/v_proj')
         + common.linear(_NEW + r'attention\.output\.dense', _OUT + 'self_attn/out_proj')
         + common.linear(_NEW + r'(?:mlp\.fc1|intermediate\.dense)', _OUT + 'mlp/fc1')
         + common.linear(_NEW + r'(?:mlp\.fc2|output\.dense)', _OUT + 'mlp/fc2')
         + common.norm(_NEW + r'layernorm_before', _OUT + 'layer_norm1')
         + common.norm(_NEW + r'layernorm_after', _OUT + 'layer_norm2')
         + common.norm(r'layernorm', 'post_layernorm'))
IGNORE = (r'pooler\..*', r'embeddings\.mask_token')


def tower_config(hf_cfg, tower: str, where: str) -> dict:
  del tower
  common.require(where, 'hidden_act', hf_cfg.hidden_act, 'gelu')
  common.require(where, 'layer_norm_eps', float(hf_cfg.layer_norm_eps), 1e-12)
  common.require(where, 'qkv_bias', getattr(hf_cfg, 'qkv_bias', True), True)
  common.require(where, 'num_channels', hf_cfg.num_channels, 3)
  return dict(kind='vit', patch_size=hf_cfg.patch_size, hidden=hf_cfg.hidden_size,
              layers=hf_cfg.num_hidden_layers, heads=hf_cfg.num_attention_heads,
              mlp_dim=hf_cfg.intermediate_size, pool='cls', image_size=hf_cfg.image_size)


def convert(state: dict, hf_cfg, tower: str, where: str):
  del hf_cfg, tower
  prefix = common.find_prefix(state, _ANCHOR, prefer=('', 'vit.'), where=where)
  return common.apply_rules(state, prefix, RULES, IGNORE)


def projection(state, hf_cfg, tower):
  del state, hf_cfg, tower
  return None
