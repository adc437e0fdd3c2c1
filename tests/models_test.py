"""Tests of stbir_jax.models: towers, fusion, the STBIR model (tiny shapes; HF parity is slow)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from stbir_jax.models import layers, resnet, text, vit
from stbir_jax.models.stbir import STBIR, centre_sketch, sketch_to_image

GROUPS = {'sketch', 'photo', 'text', 'fusion', 'temperature'}
# 'rbg' keys: XLA:CPU compiles threefry-based initialisers of a ResNet-18 ~7x slower (tens of
# seconds); the initial values do not matter to these tests.
KEY = jax.random.key(0, impl='rbg')


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def tiny_model_config(fusion='cross_attention', image_kind='clip_vit', text_kind='bert',
                      dtype='float32', remat='nothing'):
  c = base.get_config('smoke').model
  c.dtype = dtype
  c.remat = remat
  c.fusion.kind = fusion
  if image_kind != 'resnet':
    for side in (c.sketch, c.photo):
      side.update(kind=image_kind, patch_size=8, hidden=16, layers=1, heads=2, mlp_dim=32)
  if text_kind == 'clip':
    c.text.update(kind='clip', pool='eos', vocab_size=100)
  return c


def make_batch(b=3, r=32, text_len=8, seed=0):
  rng = np.random.default_rng(seed)
  mask = np.ones((b, text_len), np.int32)
  mask[1:, 5:] = 0
  mask[2:, 2:] = 0
  return dict(
      image=jnp.asarray(rng.integers(0, 256, (b, r, r, 3)), jnp.uint8),
      sketch=jnp.asarray(rng.integers(0, 6, (b, r, r)) * (rng.random((b, r, r)) < 0.2),
                         jnp.uint8),
      text_ids=jnp.asarray(rng.integers(1, 100, (b, text_len)) * mask, jnp.int32),
      text_mask=jnp.asarray(mask),
      has_sketch=jnp.ones((b,), bool), has_text=jnp.ones((b,), bool))


_INIT_CACHE = {}


def init_with_output(model, batch):
  """(params, outputs) of `model` on `batch`, jitted (op-by-op dispatch is far slower on CPU)
  and cached per (config, batch shapes): compiles dominate this file's run time."""
  key = (model.config.to_json(), model.init_temperature,
         tuple((k, v.shape) for k, v in sorted(batch.items())))
  if key not in _INIT_CACHE:
    out, variables = jax.jit(model.init_with_output)(KEY, batch)
    _INIT_CACHE[key] = (variables['params'], out)
  return _INIT_CACHE[key]


def init(model, batch):
  return init_with_output(model, batch)[0]


def forward(model):
  return jax.jit(lambda p, b: model.apply({'params': p}, b))


def query_fn(model):
  """A jitted encode_query(params, batch, **overrides)."""

  @jax.jit
  def run(params, b):
    return model.apply({'params': params}, b['sketch'], b['text_ids'], b['text_mask'],
                       b['has_sketch'], b['has_text'], method=STBIR.encode_query)

  return lambda params, batch, **overrides: run(params, dict(batch, **overrides))


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize('depth,expected', [(18, 11_176_512), (50, 23_508_032)])
@pytest.mark.parametrize('norm', ['group', 'affine'])
def test_resnet_param_counts_match_torchvision_without_fc(depth, expected, norm):
  # GroupNorm / folded-BN affine hold a scale and bias per channel, as BatchNorm's gamma/beta.
  shapes = jax.eval_shape(resnet.ResNet(depth=depth, norm=norm).init, KEY,
                          jnp.zeros((1, 224, 224, 3)))
  assert count(shapes) == expected


@pytest.mark.parametrize('variant,expected', [
    ('vit', 85_798_656),    # HF ViTModel(add_pooling_layer=False) / timm ViT-B/16 without head
    ('clip', 85_799_424),   # HF CLIPVisionModel, ViT-B/16 (no patch bias, extra pre_layrnorm)
])
def test_vit_b16_param_counts(variant, expected):
  shapes = jax.eval_shape(vit.ViT(variant=variant).init, KEY, jnp.zeros((1, 224, 224, 3)))
  assert count(shapes) == expected
  assert shapes['params']['position_embedding'].shape == (197, 768)


@pytest.mark.parametrize('kw,expected', [
    # all-MiniLM-L6-v2 = HF BertModel(add_pooling_layer=False)
    (dict(kind='bert', vocab_size=30522, hidden=384, layers=6, heads=12, mlp_dim=1536,
          pool='mean'), 22_565_376),
    # HF CLIPTextModel, openai/clip-vit-base-patch* text tower
    (dict(kind='clip', vocab_size=49408, hidden=512, layers=12, heads=8, mlp_dim=2048,
          pool='eos'), 63_165_952),
])
def test_text_param_counts_match_hf(kw, expected):
  ids = jnp.zeros((1, 8), jnp.int32)
  shapes = jax.eval_shape(text.TextTransformer(**kw).init, KEY, ids, jnp.ones((1, 8)))
  assert count(shapes) == expected


# ----------------------------------------------------------------------------- configs


def test_full_config_initialises_under_eval_shape():
  c = base.get_config()
  batch = jax.eval_shape(lambda: make_batch(2, c.data.resolution, c.data.max_text_len))
  model = STBIR(c.model, init_temperature=c.loss.init_temperature)
  variables = jax.eval_shape(model.init, KEY, batch)
  params = variables['params']
  assert set(variables) == {'params'}
  assert set(params) == GROUPS
  assert params['temperature']['log_scale'].shape == ()
  assert params['sketch']['proj']['kernel'].shape == (768, 512)
  assert params['text']['proj']['kernel'].shape == (512, 512)
  out = jax.eval_shape(model.apply, variables, batch)
  assert out['query'].shape == out['gallery'].shape == (2, 512)


@pytest.mark.parametrize('variant', ['smoke', 'demo'])
def test_small_configs_init_and_run(variant):
  c = base.get_config(variant)
  batch = make_batch(3, c.data.resolution, c.data.max_text_len)
  model = STBIR(c.model, init_temperature=c.loss.init_temperature)
  params, out = init_with_output(model, batch)
  assert set(params) == GROUPS
  d = c.model.embed_dim
  assert out['query'].shape == out['gallery'].shape == (3, d)
  assert out['query'].dtype == out['gallery'].dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(out['query'], axis=-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(out['gallery'], axis=-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(out['logit_scale'], 1 / 0.07, rtol=1e-5)
  np.testing.assert_allclose(params['temperature']['log_scale'], np.log(1 / 0.07), rtol=1e-6)


def test_logit_scale_is_clipped_at_100():
  model = STBIR(tiny_model_config(), init_temperature=0.001)
  variables = model.init(KEY, method=STBIR.logit_scale)
  assert set(variables['params']) == {'temperature'}
  assert float(model.apply(variables, method=STBIR.logit_scale)) == 100.0


# ----------------------------------------------------------------------------- model behaviour


@pytest.mark.parametrize('fusion,image_kind,text_kind', [
    ('sum', 'clip_vit', 'bert'), ('gated', 'vit', 'bert'), ('cross_attention', 'clip_vit', 'clip')])
def test_missing_modality_uses_the_learned_null(fusion, image_kind, text_kind):
  model = STBIR(tiny_model_config(fusion, image_kind, text_kind))
  batch = make_batch()
  params = init(model, batch)
  query = query_fn(model)
  other = make_batch(seed=1)
  no, yes = jnp.zeros((3,), bool), jnp.ones((3,), bool)

  full = query(params, batch)
  np.testing.assert_allclose(np.linalg.norm(full, axis=-1), 1.0, atol=1e-5)
  # Sketch-only: the text inputs do not matter, and the query differs from sketch+text.
  s_only = query(params, batch, has_text=no)
  s_only2 = query(params, batch, has_text=no, text_ids=other['text_ids'],
                  text_mask=other['text_mask'])
  np.testing.assert_allclose(s_only, s_only2, atol=1e-6)
  assert np.abs(np.asarray(s_only - full)).max() > 1e-4
  # Text-only: the sketch does not matter.
  t_only = query(params, batch, has_sketch=no)
  t_only2 = query(params, batch, has_sketch=no, sketch=other['sketch'])
  np.testing.assert_allclose(t_only, t_only2, atol=1e-6)
  # Both missing: one learned null query for every example.
  none = query(params, batch, has_sketch=no, has_text=no)
  none2 = query(params, other, has_sketch=no, has_text=no)
  np.testing.assert_allclose(none, none2, atol=1e-6)
  np.testing.assert_allclose(none, jnp.broadcast_to(none[:1], none.shape), atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(none, axis=-1), 1.0, atol=1e-5)
  # Per example: a mixed batch equals the per-mode batches row by row.
  mixed = query(params, batch, has_sketch=jnp.array([True, False, True]),
                has_text=jnp.array([True, True, False]))
  np.testing.assert_allclose(mixed[0], full[0], atol=1e-6)
  np.testing.assert_allclose(mixed[1], t_only[1], atol=1e-6)
  np.testing.assert_allclose(mixed[2], s_only[2], atol=1e-6)
  del yes


def test_encoders_compute_only_their_side():
  model = STBIR(tiny_model_config())
  batch = make_batch()
  params, out = init_with_output(model, batch)
  query = query_fn(model)
  g = jax.jit(lambda p, x: model.apply({'params': p}, x, method=STBIR.encode_gallery))(
      {'photo': params['photo']}, batch['image'])
  np.testing.assert_allclose(g, out['gallery'], atol=1e-6)
  q_params = {k: params[k] for k in ('sketch', 'text', 'fusion')}
  np.testing.assert_allclose(query(q_params, batch), out['query'], atol=1e-6)
  t = jax.jit(lambda p, i, m: model.apply({'params': p}, i, m, method=STBIR.encode_text))(
      {'text': params['text']}, batch['text_ids'], batch['text_mask'])
  assert t.shape == (3, 16)
  np.testing.assert_allclose(np.linalg.norm(t, axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize('policy', ['full', 'dots_saveable'])
def test_remat_gives_the_same_params_and_outputs(policy):
  batch = make_batch()
  plain = STBIR(tiny_model_config(text_kind='clip'))
  remat = STBIR(tiny_model_config(text_kind='clip', remat=policy))
  params, a = init_with_output(plain, batch)
  params_remat = jax.eval_shape(remat.init, KEY, batch)['params']
  assert jax.tree.structure(params) == jax.tree.structure(params_remat)
  b = forward(remat)(params, batch)
  np.testing.assert_allclose(a['query'], b['query'], atol=1e-6)
  np.testing.assert_allclose(a['gallery'], b['gallery'], atol=1e-6)


def test_remat_policy_names_and_the_booleans_of_older_configs():
  assert [layers.remat_policy(v) for v in (True, False, 'True', 'false', 'dots_saveable')] == [
      'full', 'nothing', 'full', 'nothing', 'dots_saveable']
  with pytest.raises(ValueError, match=r"config.model.remat='dots'; valid values: 'nothing'"):
    layers.remat_policy('dots')


def test_resnet_remat_gives_the_same_outputs():
  x = jax.random.normal(KEY, (2, 32, 32, 3))
  plain = resnet.ResNet(depth=18, width=4)
  variables = jax.jit(plain.init)(KEY, x)
  a = jax.jit(plain.apply)(variables, x)
  b = jax.jit(resnet.ResNet(depth=18, width=4, remat='full').apply)(variables, x)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-6), a, b)


def test_resnet_small_input_stem_and_flatten_pool():
  x = jax.random.normal(KEY, (2, 64, 64, 3))
  gap = resnet.ResNet(depth=18, width=4)
  variables = gap.init(KEY, x)
  pooled, tokens = gap.apply(variables, x)
  assert tokens.shape == (2, 2 * 2, 32) and pooled.shape == (2, 32)   # 64 / 32 = 2
  np.testing.assert_allclose(pooled, tokens.mean(axis=1), atol=1e-6)
  # The same weights without the stem max pool: stages run at twice the resolution.
  no_pool = resnet.ResNet(depth=18, width=4, stem_pool=False)
  pooled, tokens = no_pool.apply(variables, x)
  assert tokens.shape == (2, 4 * 4, 32) and pooled.shape == (2, 32)
  # 'flatten' keeps the layout: row-major (y, x, channel) of the last feature map.
  flat, tokens = resnet.ResNet(depth=18, width=4, stem_pool=False, pool='flatten').apply(
      variables, x)
  assert flat.shape == (2, 16 * 32)
  np.testing.assert_array_equal(flat[:, 32 * 5:32 * 6], tokens[:, 5])   # position (1, 1)
  with pytest.raises(ValueError, match="ResNet pool='cls'; valid values: 'gap', 'flatten'"):
    resnet.ResNet(depth=18, width=4, pool='cls').init(KEY, x)



def test_resnet_head_width_pools_a_relu_expansion_of_the_last_map():
  x = jax.random.normal(KEY, (2, 64, 64, 3))
  wide = resnet.ResNet(depth=18, width=4, stem_pool=False, head_width=48)
  variables = wide.init(KEY, x)
  pooled, tokens = wide.apply(variables, x)
  assert wide.out_dim == 48 and pooled.shape == (2, 48)
  assert tokens.shape == (2, 16, 32)    # the tokens stay the last stage's map
  head = variables['params']['head']
  expected = jnp.maximum(tokens @ head['kernel'][0, 0] + head['bias'], 0).mean(axis=1)
  np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="head_width=48 with pool='flatten'"):
    resnet.ResNet(depth=18, width=4, pool='flatten', head_width=48).init(KEY, x)

@pytest.mark.parametrize('image_kind,text_kind', [('resnet', 'bert'), ('clip_vit', 'clip')])
def test_bfloat16_compute_is_close_to_float32(image_kind, text_kind):
  batch = make_batch(3, 32, 32)   # the smoke config's shapes: shares its cached init
  f32 = STBIR(tiny_model_config(image_kind=image_kind, text_kind=text_kind))
  bf16 = STBIR(tiny_model_config(image_kind=image_kind, text_kind=text_kind, dtype='bfloat16'))
  params, a = init_with_output(f32, batch)
  bf16_params = jax.eval_shape(bf16.init, KEY, batch)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16_params))
  b = forward(bf16)(params, batch)
  for k in ('query', 'gallery'):
    assert b[k].dtype == jnp.float32
    cos = np.sum(np.asarray(a[k]) * np.asarray(b[k]), axis=-1)
    assert cos.min() > 0.99, (k, cos)


def test_sketch_is_drawn_dark_on_white():
  sketch = jnp.array([[[0, 3], [1, 0]]], jnp.uint8)
  img = sketch_to_image(sketch)
  assert img.shape == (1, 2, 2, 3)
  np.testing.assert_array_equal(img[0, :, :, 0], [[1.0, 0.0], [0.0, 1.0]])
  np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_centre_sketch_moves_the_ink_centroid_to_the_centre_keeping_stroke_ids():
  sketch = np.zeros((3, 8, 8), np.uint8)
  sketch[0, 0:2, 0:3] = [[1, 1, 2], [1, 0, 2]]   # ink centroid (0.4, 1.0): strokes move by (3, 2)
  sketch[1, 3:5, 5:8] = sketch[0, 0:2, 0:3]      # the same strokes elsewhere: by (0, -3)
  out = np.asarray(centre_sketch(jnp.asarray(sketch)))
  want = np.zeros((8, 8), np.uint8)
  want[3:5, 2:5] = sketch[0, 0:2, 0:3]           # centroid (3.4, 3.0), the centre is (3.5, 3.5)
  np.testing.assert_array_equal(out[0], want)
  np.testing.assert_array_equal(out[1], want)
  np.testing.assert_array_equal(out[2], 0)         # blank stays blank
  assert out.dtype == np.uint8


def test_centred_sketch_query_ignores_where_the_sketch_was_drawn():
  c = tiny_model_config(image_kind='resnet')
  c.sketch_centre = True
  model = STBIR(c)
  batch = make_batch()
  sketch = np.zeros((3, 32, 32), np.uint8)
  sketch[:, 10:20, 8:14] = np.asarray(batch['sketch'])[:, :10, :6]
  moved = np.roll(sketch, (5, 9), axis=(1, 2))    # nothing crosses the edge
  params = init(model, batch)
  encode = query_fn(model)
  a = encode(params, dict(batch, sketch=jnp.asarray(sketch)))
  b = encode(params, dict(batch, sketch=jnp.asarray(moved)))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  c.sketch_centre = False   # without it the tower sees the move
  plain = STBIR(c)
  p = init(plain, batch)
  a, b = (query_fn(plain)(p, dict(batch, sketch=jnp.asarray(x))) for x in (sketch, moved))
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3


def test_clip_text_pools_at_the_last_real_token():
  tower = text.TextTransformer(kind='clip', vocab_size=50, hidden=16, layers=1, heads=2,
                               mlp_dim=32, pool='eos')
  ids = jnp.array([[5, 9, 7, 0], [3, 4, 0, 0]], jnp.int32)
  mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]], jnp.int32)
  params = tower.init(KEY, ids, mask)
  pooled, tokens, out_mask = tower.apply(params, ids, mask)
  np.testing.assert_allclose(pooled[0], tokens[0, 2], atol=0)
  np.testing.assert_allclose(pooled[1], tokens[1, 1], atol=0)
  np.testing.assert_array_equal(out_mask, mask.astype(bool))
  # Causal: a token's state does not depend on later tokens.
  _, tokens2, _ = tower.apply(params, ids.at[0, 2].set(11), mask)
  np.testing.assert_allclose(tokens2[0, :2], tokens[0, :2], atol=1e-6)


def test_bert_mean_pool_ignores_padding():
  tower = text.TextTransformer(kind='bert', vocab_size=50, hidden=16, layers=1, heads=2,
                               mlp_dim=32, pool='mean')
  ids = jnp.array([[5, 9, 7, 0]], jnp.int32)
  mask = jnp.array([[1, 1, 0, 0]], jnp.int32)
  params = tower.init(KEY, ids, mask)
  pooled, tokens, _ = tower.apply(params, ids, mask)
  np.testing.assert_allclose(pooled[0], tokens[0, :2].mean(0), atol=1e-6)
  pooled2, _, _ = tower.apply(params, ids.at[0, 2:].set(13), mask)
  np.testing.assert_allclose(pooled, pooled2, atol=1e-6)


def test_image_towers_return_pooled_and_tokens():
  x = jnp.zeros((2, 64, 64, 3))
  for depth, c in [(18, 64), (50, 256)]:
    pooled, tokens = jax.eval_shape(
        lambda x, depth=depth: resnet.ResNet(depth=depth, width=8).init_with_output(KEY, x)[0],
        x)
    assert pooled.shape == (2, c) and tokens.shape == (2, 4, c)
  pooled, tokens = jax.eval_shape(
      lambda x: vit.ViT(patch_size=16, hidden=32, layers=1, heads=2, mlp_dim=64,
                        pool='gap').init_with_output(KEY, x)[0], x)
  assert pooled.shape == (2, 32) and tokens.shape == (2, 17, 32)


def test_bad_config_values_name_the_key_and_choices():
  c = tiny_model_config()
  c.sketch.kind = 'convnext'
  with pytest.raises(ValueError, match=r"config.model.sketch.kind='convnext'.*'resnet'"):
    jax.eval_shape(STBIR(c).init, KEY, make_batch())
  c = tiny_model_config()
  c.fusion.kind = 'product'
  with pytest.raises(ValueError, match=r"fusion.kind='product'.*'gated'"):
    jax.eval_shape(STBIR(c).init, KEY, make_batch())
  c = tiny_model_config()
  c.dtype = 'float16'
  with pytest.raises(ValueError, match=r"dtype='float16'.*bfloat16"):
    jax.eval_shape(STBIR(c).init, KEY, make_batch())
  with pytest.raises(ValueError, match='depth=20'):
    jax.eval_shape(resnet.ResNet(depth=20).init, KEY, jnp.zeros((1, 32, 32, 3)))


def test_affine_norm_is_selected_by_the_optional_config_key():
  c = tiny_model_config(image_kind='resnet')
  c.photo.norm = 'affine'
  params = jax.eval_shape(STBIR(c).init, KEY, make_batch())['params']
  assert set(params['photo']['backbone']['stem']['norm']) == {'scale', 'bias'}
  assert params['photo']['backbone']['stem']['norm']['scale'].shape == (4,)
  assert isinstance(c, ml_collections.ConfigDict)


# ----------------------------------------------------------------------------- HF parity (slow)


def _t(x):
  return np.asarray(x.detach().numpy())


def _linear(m):
  return {'kernel': _t(m.weight).T, 'bias': _t(m.bias)}


def _ln(m):
  return {'scale': _t(m.weight), 'bias': _t(m.bias)}


def _conv(m):
  out = {'kernel': _t(m.weight).transpose(2, 3, 1, 0)}
  if m.bias is not None:
    out['bias'] = _t(m.bias)
  return out


def _layer(q, k, v, o, ln1, fc1, fc2, ln2):
  return {'self_attn': {'q_proj': _linear(q), 'k_proj': _linear(k), 'v_proj': _linear(v),
                        'out_proj': _linear(o)},
          'layer_norm1': _ln(ln1), 'layer_norm2': _ln(ln2),
          'mlp': {'fc1': _linear(fc1), 'fc2': _linear(fc2)}}


@pytest.mark.slow
def test_hf_parity_resnet_with_folded_batchnorm():
  torch = pytest.importorskip('torch')
  from transformers import ResNetConfig, ResNetModel  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)

  def fold(bn):
    s = _t(bn.weight) / np.sqrt(_t(bn.running_var) + bn.eps)
    return {'scale': s, 'bias': _t(bn.bias) - _t(bn.running_mean) * s}

  for layer_type, depths, sizes, depth in [('bottleneck', [3, 4, 6, 3], [32, 64, 128, 256], 50),
                                           ('basic', [2, 2, 2, 2], [8, 16, 32, 64], 18)]:
    m = ResNetModel(ResNetConfig(layer_type=layer_type, depths=depths, hidden_sizes=sizes,
                                 embedding_size=8)).eval()
    for mod in m.modules():
      if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.5, 0.5)
        mod.running_var.uniform_(0.5, 1.5)
        mod.weight.data.uniform_(0.5, 1.5)
        mod.bias.data.uniform_(-0.5, 0.5)
    stem = m.embedder.embedder
    p = {'stem': {'conv': _conv(stem.convolution), 'norm': fold(stem.normalization)}}
    for i, stage in enumerate(m.encoder.stages):
      for j, block in enumerate(stage.layers):
        b = {}
        for k, conv_layer in enumerate(block.layer):
          b[f'conv_{k}'] = _conv(conv_layer.convolution)
          b[f'norm_{k}'] = fold(conv_layer.normalization)
        if not isinstance(block.shortcut, torch.nn.Identity):
          b['shortcut_conv'] = _conv(block.shortcut.convolution)
          b['shortcut_norm'] = fold(block.shortcut.normalization)
        p.setdefault(f'stage_{i}', {})[f'block_{j}'] = b
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
      ref = m(x)
    pooled, tokens = resnet.ResNet(depth=depth, width=8, norm='affine').apply(
        {'params': p}, jnp.asarray(_t(x).transpose(0, 2, 3, 1)))
    ref_tokens = _t(ref.last_hidden_state.permute(0, 2, 3, 1).flatten(1, 2))
    scale = np.abs(ref_tokens).max()
    np.testing.assert_allclose(tokens, ref_tokens, atol=1e-5 * scale)
    np.testing.assert_allclose(pooled, _t(ref.pooler_output.flatten(1)), atol=1e-5 * scale)


@pytest.mark.slow
def test_hf_parity_vision_transformers():
  torch = pytest.importorskip('torch')
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8)
  tower = lambda variant: vit.ViT(variant=variant, patch_size=8, hidden=32, layers=2, heads=4,
                                  mlp_dim=64)
  x = torch.randn(2, 3, 32, 32)
  xj = jnp.asarray(_t(x).transpose(0, 2, 3, 1))

  m = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**kw)).eval()
  vm = getattr(m, 'vision_model', m)
  e = vm.embeddings
  p = {'patch_embedding': _conv(e.patch_embedding), 'class_embedding': _t(e.class_embedding),
       'position_embedding': _t(e.position_embedding.weight), 'pre_layrnorm': _ln(vm.pre_layrnorm),
       'post_layernorm': _ln(vm.post_layernorm),
       'encoder': {f'layer_{i}': _layer(layer.self_attn.q_proj, layer.self_attn.k_proj,
                                        layer.self_attn.v_proj, layer.self_attn.out_proj,
                                        layer.layer_norm1, layer.mlp.fc1, layer.mlp.fc2,
                                        layer.layer_norm2)
                   for i, layer in enumerate(vm.encoder.layers)}}
  with torch.no_grad():
    ref = m(x)
  pooled, tokens = tower('clip').apply({'params': p}, xj)
  np.testing.assert_allclose(pooled, _t(ref.pooler_output), atol=1e-5)
  np.testing.assert_allclose(tokens, _t(ref.last_hidden_state), atol=1e-5)

  m = transformers.ViTModel(transformers.ViTConfig(**kw), add_pooling_layer=False).eval()
  torch.nn.init.normal_(m.embeddings.cls_token)
  torch.nn.init.normal_(m.embeddings.position_embeddings)
  p = {'patch_embedding': _conv(m.embeddings.patch_embeddings.projection),
       'class_embedding': _t(m.embeddings.cls_token)[0, 0],
       'position_embedding': _t(m.embeddings.position_embeddings)[0],
       'post_layernorm': _ln(m.layernorm),
       'encoder': {f'layer_{i}': _layer(layer.attention.q_proj, layer.attention.k_proj,
                                        layer.attention.v_proj, layer.attention.o_proj,
                                        layer.layernorm_before, layer.mlp.fc1, layer.mlp.fc2,
                                        layer.layernorm_after)
                   for i, layer in enumerate(m.layers)}}
  with torch.no_grad():
    ref = m(x)
  _, tokens = tower('vit').apply({'params': p}, xj)
  np.testing.assert_allclose(tokens, _t(ref.last_hidden_state), atol=1e-5)


@pytest.mark.slow
def test_hf_parity_text_towers():
  torch = pytest.importorskip('torch')
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  kw = dict(hidden=32, layers=2, heads=4, mlp_dim=64, vocab_size=100)
  mask = torch.ones(3, 10, dtype=torch.long)
  mask[1, 6:] = 0
  mask[2, 3:] = 0
  real = mask.bool().numpy()

  m = transformers.BertModel(transformers.BertConfig(
      vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64), add_pooling_layer=False).eval()
  e = m.embeddings
  p = {'word_embeddings': {'embedding': _t(e.word_embeddings.weight)},
       'position_embeddings': {'embedding': _t(e.position_embeddings.weight)},
       'token_type_embeddings': {'embedding': _t(e.token_type_embeddings.weight)},
       'embeddings_layer_norm': _ln(e.LayerNorm),
       'encoder': {f'layer_{i}': _layer(layer.attention.self.query, layer.attention.self.key,
                                        layer.attention.self.value, layer.attention.output.dense,
                                        layer.attention.output.LayerNorm, layer.intermediate.dense,
                                        layer.output.dense, layer.output.LayerNorm)
                   for i, layer in enumerate(m.encoder.layer)}}
  ids = torch.randint(1, 100, (3, 10))
  with torch.no_grad():
    ref = m(input_ids=ids, attention_mask=mask).last_hidden_state
  pooled, tokens, _ = text.TextTransformer(kind='bert', pool='mean', **kw).apply(
      {'params': p}, jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
  np.testing.assert_allclose(np.asarray(tokens)[real], _t(ref)[real], atol=1e-5)
  ref_mean = _t((ref * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
  np.testing.assert_allclose(pooled, ref_mean, atol=1e-5)

  m = transformers.CLIPTextModel(transformers.CLIPTextConfig(
      vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=16, bos_token_id=98, eos_token_id=99,
      pad_token_id=1)).eval()
  tm = getattr(m, 'text_model', m)
  e = tm.embeddings
  p = {'token_embedding': {'embedding': _t(e.token_embedding.weight)},
       'position_embedding': {'embedding': _t(e.position_embedding.weight)},
       'final_layer_norm': _ln(tm.final_layer_norm),
       'encoder': {f'layer_{i}': _layer(layer.self_attn.q_proj, layer.self_attn.k_proj,
                                        layer.self_attn.v_proj, layer.self_attn.out_proj,
                                        layer.layer_norm1, layer.mlp.fc1, layer.mlp.fc2,
                                        layer.layer_norm2)
                   for i, layer in enumerate(tm.encoder.layers)}}
  ids = torch.randint(2, 98, (3, 10))
  ids[0, -1] = 99           # EOS at the end of each text, padded with EOS (CLIP's habit)
  ids[1, 5:] = 99
  ids[2, 2:] = 99
  with torch.no_grad():
    ref = m(input_ids=ids, attention_mask=mask)
  pooled, tokens, _ = text.TextTransformer(kind='clip', pool='eos', max_positions=16, **kw).apply(
      {'params': p}, jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
  np.testing.assert_allclose(pooled, _t(ref.pooler_output), atol=1e-5)
  np.testing.assert_allclose(np.asarray(tokens)[real], _t(ref.last_hidden_state)[real], atol=1e-5)


def test_concat_fusion_scores_are_a_weighted_sum_of_a_sketch_and_a_text_score():
  """fusion.kind='concat': each side fills its half; the photo's halves are unit vectors, so
  <query, gallery> = (a <s, g_s> + b <t, g_t>) / (sqrt(2) sqrt(a^2 + b^2)) with the learned
  modality scales a, b; a missing side contributes nothing (its half is zero)."""
  c = tiny_model_config(fusion='concat', image_kind='vit')
  model = STBIR(c)
  batch = make_batch()
  params = init(model, batch)
  d = c.embed_dim
  assert params['sketch']['proj']['kernel'].shape[-1] == d // 2
  assert params['text']['proj']['kernel'].shape[-1] == d // 2
  assert params['photo']['proj']['kernel'].shape[-1] == d
  a, b = 2.0, 0.5
  params['fusion'] = {'modality_scale': jnp.log(jnp.asarray([a, b]))}
  out = jax.jit(lambda p, x: model.apply({'params': p}, x, single_modality=True))(params, batch)
  q, g = np.asarray(out['query']), np.asarray(out['gallery'])
  qs, qt = np.asarray(out['query_sketch']), np.asarray(out['query_text'])
  np.testing.assert_allclose(np.linalg.norm(g[:, :d // 2], axis=-1), 2 ** -0.5, atol=1e-6)
  np.testing.assert_allclose(qs[:, d // 2:], 0.0)
  np.testing.assert_allclose(qt[:, :d // 2], 0.0)
  sketch_score = 2 ** 0.5 * qs @ g.T      # <unit s, unit g_s>
  text_score = 2 ** 0.5 * qt @ g.T
  expected = (a * sketch_score + b * text_score) / (2 ** 0.5 * np.hypot(a, b))
  np.testing.assert_allclose(q @ g.T, expected, atol=1e-5)
  # encode_text (the category prototypes) lives in the text half, as the text-only query does.
  t = model.apply({'params': params}, batch['text_ids'], batch['text_mask'],
                  method=STBIR.encode_text)
  np.testing.assert_allclose(t, qt, atol=1e-6)
  c.embed_dim = 15
  with pytest.raises(ValueError, match='embed_dim=15.*even'):
    jax.eval_shape(STBIR(c).init, KEY, batch)


def test_two_photo_towers_fill_one_half_each():
  """fusion.photo_towers=2: the text half of a photo's embedding comes from its own tower, so
  changing that tower's weights leaves the sketch half untouched."""
  c = tiny_model_config(fusion='concat', image_kind='vit')
  c.fusion.photo_towers = 2
  model = STBIR(c)
  batch = make_batch()
  params = init(model, batch)
  half = c.embed_dim // 2
  assert set(params['photo']) == {'backbone', 'proj', 'text_backbone', 'text_proj'}
  assert params['photo']['proj']['kernel'].shape[-1] == half
  assert params['photo']['text_proj']['kernel'].shape[-1] == half
  gallery = jax.jit(lambda p: model.apply({'params': p}, batch['image'],
                                          method=STBIR.encode_gallery))
  g = np.asarray(gallery(params))
  moved = dict(params, photo=dict(params['photo'], text_backbone=jax.tree.map(
      lambda x: x + 0.1, params['photo']['text_backbone'])))
  g2 = np.asarray(gallery(moved))
  np.testing.assert_allclose(g2[:, :half], g[:, :half], atol=1e-6)
  assert np.abs(g2[:, half:] - g[:, half:]).max() > 1e-3
  c.fusion.kind = 'sum'
  with pytest.raises(ValueError, match='photo_towers=2 needs a split fusion'):
    jax.eval_shape(STBIR(c).init, KEY, batch)


def test_the_text_halfs_photo_tower_can_have_its_own_config():
  """config.model.photo_text builds the second photo tower (here: stem pool and a global
  average pool, a quarter of the pixels in every stage), the first keeps config.model.photo;
  without photo_towers=2 the key is an error, not silently ignored."""
  c = tiny_model_config(fusion='concat', image_kind='resnet')
  c.fusion.photo_towers = 2
  c.photo.update(stem_pool=False, pool='flatten')
  c.photo_text = ml_collections.ConfigDict(dict(c.photo.to_dict(), stem_pool=True, pool='gap'))
  batch = make_batch()
  params = init(STBIR(c), batch)
  width = c.photo.width * 8                     # the last stage's channels
  side = 32 // 16                               # 32 px, no stem pool: a 2 x 2 map
  assert params['photo']['proj']['kernel'].shape == (side * side * width, c.embed_dim // 2)
  assert params['photo']['text_proj']['kernel'].shape == (width, c.embed_dim // 2)
  c.fusion.photo_towers = 1
  with pytest.raises(ValueError, match='photo_text configures the text half.*photo_towers=2'):
    jax.eval_shape(STBIR(c).init, KEY, batch)


@pytest.mark.parametrize('fusion', ['sum', 'concat', 'cross_attention'])
def test_single_modality_queries_equal_queries_with_the_other_side_hidden(fusion):
  model = STBIR(tiny_model_config(fusion=fusion, image_kind='vit'))
  batch = make_batch()
  batch['has_text'] = jnp.array([True, False, True])   # row 1: sketch-only already
  params = init(model, batch)
  out = jax.jit(lambda p, b: model.apply({'params': p}, b, single_modality=True))(params, batch)
  encode = jax.jit(lambda p, hs, ht: model.apply(
      {'params': p}, batch['sketch'], batch['text_ids'], batch['text_mask'], hs, ht,
      method=STBIR.encode_query))
  none = jnp.zeros(3, bool)
  np.testing.assert_allclose(out['query'], encode(params, batch['has_sketch'], batch['has_text']),
                             atol=1e-6)
  np.testing.assert_allclose(out['query_sketch'], encode(params, batch['has_sketch'], none),
                             atol=1e-6)
  np.testing.assert_allclose(out['query_text'], encode(params, none, batch['has_text']),
                             atol=1e-6)
  # The text-only query of row 1 (no text) is the all-null query, unlike its sketch query.
  assert not np.allclose(out['query_text'][1], out['query_sketch'][1])


def test_gradient_barrier_is_the_identity_and_sits_in_the_layer_norm_backward():
  x = jnp.linspace(-2.0, 3.0, 24).reshape(2, 3, 4)
  f = lambda x: jnp.sum(jnp.sin(x) * x)
  np.testing.assert_array_equal(layers.gradient_barrier(x), x)
  np.testing.assert_array_equal(jax.grad(lambda x: f(layers.gradient_barrier(x)))(x),
                                jax.grad(f)(x))
  # One barrier per LayerNorm of a pre-LN layer, in the backward pass only (docs/performance.md:
  # without it XLA CPU fuses the LayerNorm backward into a transposed, strided loop).
  layer = layers.TransformerLayer(hidden=4, heads=2, mlp_dim=8)
  params = layer.init(jax.random.PRNGKey(0), x)
  loss = lambda p, x: jnp.sum(layer.apply(p, x) ** 2)
  assert 'optimization_barrier' not in str(jax.make_jaxpr(loss)(params, x))
  backward = str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, x))
  assert backward.count('optimization_barrier') == 2


@pytest.mark.parametrize('channels,groups,dtype', [(8, 4, 'float32'), (64, 32, 'float32'),
                                                   (12, 3, 'bfloat16')])
def test_resnet_group_norm_equals_flax_group_norm(channels, groups, dtype):
  """The per-channel-statistics GroupNorm (resnet.GroupNorm: faster on XLA CPU) gives
  nn.GroupNorm's values and gradients, with a non-trivial scale and bias and an offset input
  (a one-pass variance would lose digits there)."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  x = 3.0 + jax.random.normal(jax.random.PRNGKey(1), (2, 5, 6, channels))
  ours = resnet.GroupNorm(num_groups=groups, dtype=jnp.dtype(dtype))
  ref = nn.GroupNorm(num_groups=groups, epsilon=1e-5, use_fast_variance=False,
                     dtype=jnp.dtype(dtype))
  params = ours.init(KEY, x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref.init(KEY, x))
  params = jax.tree.map(lambda p: p + jax.random.uniform(jax.random.PRNGKey(2), p.shape), params)
  tol = 1e-5 if dtype == 'float32' else 1e-2
  np.testing.assert_allclose(np.asarray(ours.apply(params, x), np.float32),
                             np.asarray(ref.apply(params, x), np.float32), atol=tol, rtol=tol)
  weights = jax.random.normal(jax.random.PRNGKey(3), x.shape)
  grads = [jax.grad(lambda p, x, m=m: jnp.sum(m.apply(p, x).astype(jnp.float32) * weights),
                    argnums=(0, 1))(params, x) for m in (ours, ref)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float32),
                                                       np.asarray(b, np.float32),
                                                       atol=10 * tol, rtol=10 * tol), *grads)
  with pytest.raises(ValueError, match='12 channels do not split into 5 groups'):
    resnet.GroupNorm(num_groups=5).init(KEY, jnp.zeros((1, 2, 2, 12)))
