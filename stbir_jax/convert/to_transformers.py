"""Our towers -> Hugging Face transformers checkpoints: the export back (CLIP layout only).

  write_clip(config, params, out)   # config.model with clip_vit sketch/photo and clip text

writes
  OUT/                  transformers.CLIPModel: the photo tower (vision_model, visual_projection),
                        the text tower (text_model, text_projection) and logit_scale (our
                        temperature/log_scale); plus the run's tokenizer and a CLIPImageProcessor
                        (resolution, CLIP mean/std), so AutoProcessor.from_pretrained(OUT) works
  OUT/sketch/           transformers.CLIPVisionModelWithProjection: the sketch tower
  OUT/stbir_fusion.safetensors   the fusion params (not a transformers model; README.md)
  OUT/README.md         how to embed and fuse in PyTorch

The tensor names come from the forward converter's rules (convert/clip.py) read backwards
(common.map_names + INVERSE_TRANSFORMS), applied to the names and shapes of the transformers
model built on the meta device: one name table for both directions.
"""

import json
import os

import numpy as np
from flax import traverse_util

from stbir_jax.convert import clip, common
from stbir_jax.convert.hub import ConvertError

SKETCH_DIR = 'sketch'
FUSION_FILE = 'stbir_fusion.safetensors'


def _flat(tree) -> dict:
  return {'/'.join(k): np.asarray(v, np.float32)
          for k, v in traverse_util.flatten_dict(tree).items()}


def _reverse(backbone, shapes: dict, prefix: str, rules, where: str) -> dict:
  """Our backbone params -> {torch name: array} for every torch name under `prefix`."""
  ours = _flat(backbone)
  mapping, unmapped = common.map_names(shapes, prefix, rules, clip.IGNORE)
  if unmapped:
    raise ConvertError(f'{where}: transformers tensors no rule maps: {", ".join(unmapped)}')
  out, used = {}, set()
  for name, (path, transform) in mapping.items():
    if path not in ours:
      raise ConvertError(f'{where}: our params lack {path} (for {name}).')
    x = common.INVERSE_TRANSFORMS[transform](ours[path])
    if x.size != int(np.prod(shapes[name])):
      raise ConvertError(f'{where}: {path} {ours[path].shape} does not fit {name} '
                         f'{tuple(shapes[name])}.')
    out[name] = np.ascontiguousarray(x.reshape(shapes[name]))
    used.add(path)
  left = sorted(set(ours) - used)
  if left:
    raise ConvertError(f'{where}: params with no transformers counterpart: {", ".join(left)}')
  return out


def _check(cfg, where: str, kind: str, pools) -> None:
  if cfg.kind != kind:
    raise ConvertError(f'{where}.kind={cfg.kind!r}: the transformers export writes CLIP towers '
                       f'only ({where}.kind={kind!r}).')
  if cfg.pool not in pools:
    raise ConvertError(f'{where}.pool={cfg.pool!r}: transformers CLIP pools '
                       f'{" or ".join(map(repr, pools))} only.')


def _vision_config(cfg, resolution: int) -> dict:
  return {'hidden_size': cfg.hidden, 'intermediate_size': cfg.mlp_dim,
          'num_hidden_layers': cfg.layers, 'num_attention_heads': cfg.heads,
          'image_size': resolution, 'patch_size': cfg.patch_size, 'num_channels': 3,
          'hidden_act': 'quick_gelu', 'layer_norm_eps': 1e-5}


def _text_config(cfg, tokenizer) -> dict:
  """HF pools the first `eos_token_id` (argmax(ids) when it is 2); our 'eos' pool takes the last
  real token, which is that token when the tokenizer ends every text with it."""
  hf_tok = tokenizer.hf_tokenizer
  if cfg.pool == 'argmax':
    eos = 2
  else:
    eos = hf_tok.eos_token_id if hf_tok.eos_token_id is not None else hf_tok.sep_token_id
    if eos is None:
      raise ConvertError(f'tokenizer {tokenizer.name!r} has no eos or sep token: transformers '
                         "CLIP cannot find the token our 'eos' pool reads.")
  bos = hf_tok.bos_token_id if hf_tok.bos_token_id is not None else hf_tok.cls_token_id
  return {'vocab_size': cfg.vocab_size, 'hidden_size': cfg.hidden,
          'intermediate_size': cfg.mlp_dim, 'num_hidden_layers': cfg.layers,
          'num_attention_heads': cfg.heads,
          'max_position_embeddings': int(cfg.get('max_positions') or 77),   # text.py's default
          'hidden_act': 'quick_gelu', 'layer_norm_eps': 1e-5, 'eos_token_id': int(eos),
          'pad_token_id': int(tokenizer.pad_id), 'bos_token_id': int(bos or 0)}


def _state(model, prefixes_and_trees: dict, where: str):
  """-> (state dict of `model` (built on the meta device) from our backbones, {name: shape})."""
  shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  out = {}
  for prefix, (tower, backbone) in prefixes_and_trees.items():
    rules = clip.VISION_RULES if tower == 'vision' else clip.TEXT_RULES
    out.update(_reverse(backbone, shapes, prefix, rules, f'{where} ({prefix[:-1]})'))
  return out, shapes


def _check_complete(tensors: dict, shapes: dict, where: str) -> None:
  missing = sorted(set(shapes) - set(tensors))
  if missing:
    raise ConvertError(f'{where}: no value for {", ".join(missing)}.')


def _save(model_config, tensors: dict, out: str) -> None:
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(out, exist_ok=True)
  model_config.save_pretrained(out)
  # np.array, not np.ascontiguousarray, which turns the 0-d logit_scale into shape (1,).
  save_file({k: np.array(v, np.float32, order='C') for k, v in tensors.items()},
            os.path.join(out, 'model.safetensors'), metadata={'format': 'pt'})


def write_clip(config, params, out: str) -> str:
  """Writes the CLIPModel (photo + text) to `out` and the sketch tower to out/sketch; `config`
  is the run's full config, `params` its model params (numpy or jax)."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  from stbir_jax.data.tokenizer import get_tokenizer  # pylint: disable=g-import-not-at-top
  from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top

  m = config.model
  if m.fusion.kind in stbir.fusion_lib.SPLIT_KINDS:
    raise ConvertError(f'config.model.fusion.kind={m.fusion.kind!r} splits the embedding into a '
                       'sketch half and a text half, which a CLIPModel cannot hold (one projection '
                       'size, no half-wise normalisation); export with python -m stbir_jax.export.')
  if m.get('sketch_align', False):
    raise ConvertError('config.model.sketch_align=True warps each sketch with a learned aligner '
                       'before its tower, which a CLIPVisionModel cannot hold; export with '
                       'python -m stbir_jax.export.')
  _check(m.photo, 'config.model.photo', 'clip_vit', ('cls',))
  _check(m.sketch, 'config.model.sketch', 'clip_vit', ('cls',))
  _check(m.text, 'config.model.text', 'clip', ('eos', 'argmax'))
  resolution = int(config.data.resolution)
  tokenizer = get_tokenizer(config.data.tokenizer)
  clip_config = transformers.CLIPConfig(
      text_config=_text_config(m.text, tokenizer),
      vision_config=_vision_config(m.photo, resolution), projection_dim=int(m.embed_dim))
  sketch_config = transformers.CLIPVisionConfig(**_vision_config(m.sketch, resolution),
                                                projection_dim=int(m.embed_dim))
  with torch.device('meta'):
    clip_model = transformers.CLIPModel(clip_config)
    sketch_model = transformers.CLIPVisionModelWithProjection(sketch_config)

  tensors, shapes = _state(clip_model, {
      'vision_model.': ('vision', params['photo']['backbone']),
      'text_model.': ('text', params['text']['backbone'])}, 'CLIPModel')
  tensors['visual_projection.weight'] = np.asarray(params['photo']['proj']['kernel']).T
  tensors['text_projection.weight'] = np.asarray(params['text']['proj']['kernel']).T
  tensors['logit_scale'] = np.asarray(params['temperature']['log_scale'],
                                      np.float32).reshape(shapes['logit_scale'])
  sketch_tensors, sketch_shapes = _state(sketch_model, {
      'vision_model.': ('vision', params['sketch']['backbone'])}, 'CLIPVisionModelWithProjection')
  sketch_tensors['visual_projection.weight'] = np.asarray(params['sketch']['proj']['kernel']).T
  # Every tensor is converted and checked before anything is written.
  _check_complete(tensors, shapes, 'CLIPModel')
  _check_complete(sketch_tensors, sketch_shapes, 'CLIPVisionModelWithProjection (sketch)')

  _save(clip_config, tensors, out)
  tokenizer.hf_tokenizer.save_pretrained(out)
  mean, std = stbir.PIXEL_STATS['clip_vit']
  transformers.CLIPImageProcessor(
      size={'shortest_edge': resolution}, crop_size={'height': resolution, 'width': resolution},
      image_mean=list(mean), image_std=list(std)).save_pretrained(out)

  _save(sketch_config, sketch_tensors, os.path.join(out, SKETCH_DIR))

  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  fusion = {k: np.ascontiguousarray(v) for k, v in _flat(params['fusion']).items()}
  save_file(fusion, os.path.join(out, FUSION_FILE),
            metadata={'kind': m.fusion.kind, 'config': json.dumps(m.fusion.to_dict())})
  with open(os.path.join(out, 'README.md'), 'w', encoding='utf-8') as f:
    f.write(_readme(m.fusion.kind, resolution))
  return out


def _readme(fusion_kind: str, resolution: int) -> str:
  return f"""# STBIR towers in transformers format

- this directory: `transformers.CLIPModel` (photo tower = vision side, text tower = text side)
- `{SKETCH_DIR}/`: `transformers.CLIPVisionModelWithProjection` (the sketch tower)
- `{FUSION_FILE}`: the fusion (`{fusion_kind}`) parameters; not a transformers model

Inputs: {resolution} px images normalised with CLIP's mean/std (`CLIPImageProcessor` here).
A sketch is an RGB image of black strokes on white, normalised the same way.

Not representable in transformers: the query fusion (below), the category prototypes and the
training losses; the temperature is `logit_scale`.

```python
import torch, transformers
clip = transformers.CLIPModel.from_pretrained(DIR)
sketch = transformers.CLIPVisionModelWithProjection.from_pretrained(DIR + '/{SKETCH_DIR}')
photo_emb = clip.get_image_features(pixel_values=photos).pooler_output    # gallery
text_emb = clip.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
sketch_emb = sketch(pixel_values=sketches).image_embeds
normalize = torch.nn.functional.normalize
gallery = normalize(photo_emb, dim=-1)
query = normalize(sketch_emb + text_emb, dim=-1)    # fusion 'sum': the raw embeddings' sum
scores = query @ gallery.T
```
With `model.fusion.normalize` (the default of every config but the demo) the sum is of unit
vectors scaled by the learned `exp(modality_scale)` of `{FUSION_FILE}`:
`query = normalize(a * normalize(sketch_emb) + b * normalize(text_emb))`, (a, b) = those scales.
With fusion 'sum', a sketch-only query is `normalize(sketch_emb + null_text)` and a text-only
one `normalize(null_sketch + text_emb)`, the vectors in `{FUSION_FILE}`. Other fusions
('gated', 'cross_attention') need the JAX model (`python -m stbir_jax.export`).
"""
