"""HF BERT-family sentence encoders (BertModel, e.g. sentence-transformers/all-MiniLM-L6-v2,
bert-base-uncased) -> our 'bert' text tower (models/text.py).

The tower pools itself (sentence-transformers' mean pooling by default, or the CLS token when the
checkpoint's 1_Pooling/config.json says so); HF's tanh pooler and MLM/NSP heads are not loaded.
BERT has no projection: the tower's `proj` head stays randomly initialised.
"""

from stbir_jax.convert import common, hub

MODEL_TYPES = {'bert': ('text',)}
_ANCHOR = 'embeddings.word_embeddings.weight'

_L = r'encoder\.layer\.(\d+)\.'
RULES = (common.embed(r'embeddings\.word_embeddings', 'word_embeddings')
         + common.embed(r'embeddings\.position_embeddings', 'position_embeddings')
         + common.embed(r'embeddings\.token_type_embeddings', 'token_type_embeddings')
         + common.norm(r'embeddings\.LayerNorm', 'embeddings_layer_norm')
         + common.linear(_L + r'attention\.self\.query', r'encoder/layer_\1/self_attn/q_proj')
         + common.linear(_L + r'attention\.self\.key', r'encoder/layer_\1/self_attn/k_proj')
         + common.linear(_L + r'attention\.self\.value', r'encoder/layer_\1/self_attn/v_proj')
         + common.linear(_L + r'attention\.output\.dense', r'encoder/layer_\1/self_attn/out_proj')
         + common.norm(_L + r'attention\.output\.LayerNorm', r'encoder/layer_\1/layer_norm1')
         + common.linear(_L + r'intermediate\.dense', r'encoder/layer_\1/mlp/fc1')
         + common.linear(_L + r'output\.dense', r'encoder/layer_\1/mlp/fc2')
         + common.norm(_L + r'output\.LayerNorm', r'encoder/layer_\1/layer_norm2'))
IGNORE = (r'embeddings\.position_ids', r'pooler\..*')


def _pool(src: str) -> str:
  pooling = hub.read_json(src, '1_Pooling/config.json') or {}
  return 'cls' if pooling.get('pooling_mode_cls_token') else 'mean'


def tower_config(hf_cfg, tower: str, where: str, src: str = '') -> dict:
  del tower
  common.require(where, 'hidden_act', hf_cfg.hidden_act, 'gelu')
  common.require(where, 'layer_norm_eps', float(hf_cfg.layer_norm_eps), 1e-12)
  common.require(where, 'type_vocab_size', hf_cfg.type_vocab_size, 2)
  common.require(where, 'position_embedding_type',
                 getattr(hf_cfg, 'position_embedding_type', 'absolute') or 'absolute', 'absolute')
  return dict(kind='bert', vocab_size=hf_cfg.vocab_size, hidden=hf_cfg.hidden_size,
              layers=hf_cfg.num_hidden_layers, heads=hf_cfg.num_attention_heads,
              mlp_dim=hf_cfg.intermediate_size, pool=_pool(src) if src else 'mean',
              max_positions=hf_cfg.max_position_embeddings)


def convert(state: dict, hf_cfg, tower: str, where: str):
  del hf_cfg, tower
  prefix = common.find_prefix(state, _ANCHOR, prefer=('', 'bert.'), where=where)
  return common.apply_rules(state, prefix, RULES, IGNORE)


def projection(state, hf_cfg, tower):
  del state, hf_cfg, tower
  return None
