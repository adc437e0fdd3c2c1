"""Export back to transformers: a CLIP-layout run's photo + text towers load with
CLIPModel.from_pretrained, its sketch tower with CLIPVisionModelWithProjection.from_pretrained,
and their embeddings match the JAX model's to 1e-4 (float32), through the saved processor and
tokenizer; the documented sum-fusion recipe reproduces encode_query."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

import _tiny  # pylint: disable=g-import-not-at-top,wrong-import-order
from stbir_jax import export  # pylint: disable=g-import-not-at-top
from stbir_jax.convert import ConvertError, to_transformers  # pylint: disable=g-import-not-at-top
from stbir_jax.data.tokenizer import get_tokenizer  # pylint: disable=g-import-not-at-top
from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top

TOL = 1e-4
TEXTS = ['a red leather sneaker', 'blue boot', 'a white canvas loafer with black laces']


def _config():
  config = _tiny.tiny_config()
  clip_vit = {'kind': 'clip_vit', 'patch_size': 8, 'hidden': 32, 'layers': 2, 'heads': 2,
              'mlp_dim': 40, 'pool': 'cls'}
  config.model.sketch.update(clip_vit)
  config.model.photo.update(dict(clip_vit, hidden=24, mlp_dim=36))
  config.model.text.update({'kind': 'clip', 'pool': 'eos', 'hidden': 16, 'layers': 2,
                            'heads': 2, 'mlp_dim': 24})
  config.model.fusion.kind = 'sum'
  return config


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """A run directory (config.json + an orbax checkpoint of perturbed params) exported with
  export_run_transformers, the function behind --format=transformers."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  config = _config()
  model = stbir.STBIR.from_config(config)
  r, text_len = config.data.resolution, config.data.max_text_len
  batch = {'image': jnp.zeros((1, r, r, 3), jnp.uint8),
           'sketch': jnp.zeros((1, r, r), jnp.uint8),
           'text_ids': jnp.zeros((1, text_len), jnp.int32),
           'text_mask': jnp.ones((1, text_len), jnp.int32), 'has_sketch': jnp.ones((1,), bool),
           'has_text': jnp.ones((1,), bool)}
  params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)['params']
  rng = np.random.default_rng(1)   # LN scales 1 and biases 0 would hide a swapped tensor
  params = jax.tree.map(lambda x: np.asarray(x) + 0.05 * rng.standard_normal(x.shape)
                        .astype(np.float32), jax.device_get(params))
  workdir = tmp_path_factory.mktemp('run')
  (workdir / 'config.json').write_text(config.to_json_best_effort())
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(workdir / 'checkpoints' / '7' / 'state', {'params': params})
  ckpt.wait_until_finished()
  out = str(tmp_path_factory.mktemp('hf'))
  assert export.export_run_transformers(str(workdir), out) == 7
  return config, model, params, out


def _close(ours, ref):
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref.detach(), np.float64)
  assert ours.shape == ref.shape
  diff = float(np.max(np.abs(ours - ref)))
  assert diff <= TOL, f'max abs diff {diff:.3g} > {TOL}'
  return diff


def _inputs(config):
  r = config.data.resolution
  rng = np.random.default_rng(2)
  image = rng.integers(0, 256, (3, r, r, 3), dtype=np.uint8)
  sketch = ((rng.random((3, r, r)) < 0.15) * rng.integers(1, 6, (3, r, r))).astype(np.uint8)
  return image, sketch


def test_transformers_loads_every_tensor(exported):
  _, _, _, out = exported
  _, info = transformers.CLIPModel.from_pretrained(out, output_loading_info=True)
  assert not any(info.values()), info
  _, info = transformers.CLIPVisionModelWithProjection.from_pretrained(
      os.path.join(out, to_transformers.SKETCH_DIR), output_loading_info=True)
  assert not any(info.values()), info
  for name in ('README.md', to_transformers.FUSION_FILE, 'preprocessor_config.json'):
    assert os.path.isfile(os.path.join(out, name)), name


def test_photo_text_and_sketch_embeddings_match_the_jax_model(exported):
  config, model, params, out = exported
  clip = transformers.CLIPModel.from_pretrained(out).eval()
  sketch_model = transformers.CLIPVisionModelWithProjection.from_pretrained(
      os.path.join(out, to_transformers.SKETCH_DIR)).eval()
  processor = transformers.CLIPImageProcessor.from_pretrained(out)
  hf_tok = transformers.AutoTokenizer.from_pretrained(out)
  image, sketch = _inputs(config)
  tok = get_tokenizer(config.data.tokenizer)
  ids, mask = tok.encode(TEXTS, config.data.max_text_len)
  hf = hf_tok(TEXTS, max_length=config.data.max_text_len, padding='max_length',
              truncation=True, return_tensors='pt')
  np.testing.assert_array_equal(hf['input_ids'].numpy(), ids)   # the saved tokenizer

  v = {'params': params}
  apply = lambda method, *a: jax.jit(lambda p, *x: model.apply(p, *x, method=method))(v, *a)
  gallery = apply(stbir.STBIR.encode_gallery, image)
  text = apply(stbir.STBIR.encode_text, ids, mask)
  sketch_raw = apply(lambda m, s: m.sketch(stbir.normalize_pixels(
      stbir.sketch_to_image(s), m.config.sketch.kind))[0], sketch)
  text_raw = apply(lambda m, i, k: m.text(i, k)[0], ids, mask)
  both = np.ones(3, bool)
  query = apply(stbir.STBIR.encode_query, sketch, ids, mask, both, both)

  normalize = torch.nn.functional.normalize
  sketch_rgb = np.repeat(np.where(sketch > 0, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
  with torch.no_grad():
    photo_emb = clip.get_image_features(
        **processor(images=list(image), return_tensors='pt')).pooler_output
    text_emb = clip.get_text_features(input_ids=hf['input_ids'],
                                      attention_mask=hf['attention_mask']).pooler_output
    sketch_emb = sketch_model(
        **processor(images=list(sketch_rgb), return_tensors='pt')).image_embeds
  fused = sketch_emb + text_emb
  if 'modality_scale' in params['fusion']:   # model.fusion.normalize: unit sides, learned scales
    scale = torch.from_numpy(np.exp(np.asarray(params['fusion']['modality_scale'])))
    fused = scale[0] * normalize(sketch_emb, dim=-1) + scale[1] * normalize(text_emb, dim=-1)
  diffs = {'gallery': _close(gallery, normalize(photo_emb, dim=-1)),
           'text': _close(text, normalize(text_emb, dim=-1)),
           'text_raw': _close(text_raw, text_emb),
           'sketch_raw': _close(sketch_raw, sketch_emb),
           'sum_fusion_query': _close(query, normalize(fused, dim=-1))}
  np.testing.assert_allclose(float(clip.logit_scale.detach()),
                             float(params['temperature']['log_scale']), rtol=1e-6)
  print('export to transformers, max abs diff:', json.dumps(
      {k: f'{d:.1e}' for k, d in diffs.items()}))


def test_non_clip_towers_are_refused_with_the_key(tmp_path):
  config = _config()
  config.model.sketch.update(kind='resnet')
  with pytest.raises(ConvertError, match=r"config.model.sketch.kind='resnet'.*CLIP towers only"):
    to_transformers.write_clip(config, {}, str(tmp_path))
  config = _config()
  config.model.photo.pool = 'gap'
  with pytest.raises(ConvertError, match="config.model.photo.pool='gap'"):
    to_transformers.write_clip(config, {}, str(tmp_path))
  config = _config()
  config.model.fusion.kind = 'concat'
  with pytest.raises(ConvertError, match=r"fusion.kind='concat'.*python -m stbir_jax.export"):
    to_transformers.write_clip(config, {}, str(tmp_path))
  config = _config()
  config.model.sketch_align = True   # its aligner would be dropped from the sketch tower
  with pytest.raises(ConvertError, match=r"sketch_align=True .*python -m stbir_jax.export"):
    to_transformers.write_clip(config, {}, str(tmp_path))
  assert not os.listdir(tmp_path)
