"""SigLIP / SigLIP 2 towers (parity with transformers' PyTorch models from random weights), the
configs/base.py:siglip variant's loading path, and the sigmoid loss on hand-computed values.

Tiny random HF models (hidden 32, 2 layers, every parameter perturbed) are saved with
save_pretrained, converted, and run on the same inputs; embeddings must match to 1e-4 in float32
(pytest -s prints the max abs differences, quoted in docs/pretrained.md).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

import _tiny  # pylint: disable=g-import-not-at-top,wrong-import-order
from _parity import close, report_diffs  # noqa: F401  pylint: disable=g-import-not-at-top,wrong-import-order,unused-import
from configs import base  # pylint: disable=g-import-not-at-top,wrong-import-order
from stbir_jax import config_checks, convert, losses, stages, train_step  # pylint: disable=g-import-not-at-top
from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top

PATCH, IMAGE, HIDDEN, VOCAB, TEXT_LEN = 8, 32, 32, 99, 12


def _perturb(model, seed):
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for t in model.parameters():
      t.add_(torch.randn(t.shape, generator=g) * 0.05)
  return model.eval()


def _tiny_config(version):
  text = {'vocab_size': VOCAB, 'hidden_size': HIDDEN, 'intermediate_size': 2 * HIDDEN + 5,
          'num_hidden_layers': 2, 'num_attention_heads': 4, 'max_position_embeddings': 16,
          'projection_size': HIDDEN}
  vision = {'hidden_size': HIDDEN, 'intermediate_size': 2 * HIDDEN + 3, 'num_hidden_layers': 2,
            'num_attention_heads': 4, 'patch_size': PATCH}
  if version == 2:
    vision['num_patches'] = (IMAGE // PATCH)**2
    return transformers.Siglip2Config(text_config=text, vision_config=vision)
  vision['image_size'] = IMAGE
  return transformers.SiglipConfig(text_config=text, vision_config=vision)


def _model_class(version):
  return transformers.Siglip2Model if version == 2 else transformers.SiglipModel


@pytest.fixture(scope='module', params=[1, 2], ids=['siglip', 'siglip2'])
def siglip_ckpt(request, tmp_path_factory):
  version = request.param
  if version == 2 and not hasattr(transformers, 'Siglip2Model'):
    pytest.skip('this transformers has no Siglip2Model')
  torch.manual_seed(0)
  model = _perturb(_model_class(version)(_tiny_config(version)), 1)
  path = tmp_path_factory.mktemp('siglip') / f'v{version}'
  model.save_pretrained(str(path))
  return f'siglip{version if version == 2 else ""}', model, str(path)


def _hf_image_features(model, x):
  """x float (B, H, W, 3) normalised -> HF (pooled, tokens); SigLIP 2 takes patches."""
  b, h, w, c = x.shape
  if isinstance(model, transformers.SiglipModel):
    pixels = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    out = model.vision_model(pixel_values=pixels)
  else:   # Siglip2ImageProcessor's layout: patches row-major, each flattened (ph, pw, c)
    patches = x.reshape(b, h // PATCH, PATCH, w // PATCH, PATCH, c).transpose(0, 1, 3, 2, 4, 5)
    patches = torch.from_numpy(np.ascontiguousarray(patches.reshape(b, -1, PATCH * PATCH * c)))
    grid = torch.tensor([[h // PATCH, w // PATCH]] * b)
    out = model.vision_model(pixel_values=patches, spatial_shapes=grid,
                             pixel_attention_mask=torch.ones(patches.shape[:2], dtype=torch.long))
  return out.pooler_output, out.last_hidden_state


def _text_inputs():
  ids = np.random.RandomState(3).randint(2, VOCAB, size=(3, TEXT_LEN))
  mask = np.zeros_like(ids)
  for i, n in enumerate([TEXT_LEN, 7, 3]):
    mask[i, :n] = 1
    ids[i, n:] = 1   # the pad id
  return ids, mask


def _hf_text_features(model, ids, mask):
  out = model.text_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
  return out.pooler_output, out.last_hidden_state


def _apply(module, params, *args):
  return jax.jit(module.apply)({'params': params}, *args)


def test_siglip_vision_tower_parity(siglip_ckpt):
  name, model, src = siglip_ckpt
  cfg = convert.tower_config_from_hf(src, 'vision')
  assert (cfg.kind, cfg.pool, cfg.patch_size) == ('siglip_vit', 'map', PATCH)
  assert convert.image_size(src) == IMAGE
  x = np.random.RandomState(0).randn(2, IMAGE, IMAGE, 3).astype(np.float32)
  params = {'backbone': convert.load_tower_params(src, 'vision'),
            'proj': {'kernel': convert.load_projection(src, 'vision')}}
  pooled, tokens = _apply(stbir.image_tower(cfg, False, jnp.float32, 'test'),
                          params['backbone'], jnp.asarray(x))
  emb, _ = _apply(stbir.ImageEncoder(cfg, HIDDEN), params, jnp.asarray(x))
  with torch.no_grad():
    ref_pooled, ref_tokens = _hf_image_features(model, x)
  close(f'{name}_vision_tokens', tokens, ref_tokens)
  close(f'{name}_vision_pooled', pooled, ref_pooled)
  close(f'{name}_image_embeds', emb, ref_pooled)   # the identity projection


def test_siglip_text_tower_parity(siglip_ckpt):
  name, model, src = siglip_ckpt
  cfg = convert.tower_config_from_hf(src, 'text')
  proj_size = model.config.text_config.projection_size
  assert (cfg.kind, cfg.pool, cfg.max_positions, cfg.projection_size) == (
      'siglip', 'last', 16, proj_size)
  ids, mask = _text_inputs()
  params = {'backbone': convert.load_tower_params(src, 'text'),
            'proj': {'kernel': convert.load_projection(src, 'text')}}
  emb, tokens, _ = _apply(stbir.TextEncoder(cfg, proj_size), params, jnp.asarray(ids),
                          jnp.asarray(mask))
  with torch.no_grad():
    ref_pooled, ref_tokens = _hf_text_features(model, ids, mask)
  close(f'{name}_text_embeds', emb, ref_pooled)
  close(f'{name}_text_tokens', tokens, ref_tokens)


def test_siglip_text_tower_is_not_causal(siglip_ckpt):
  """A later token changes the pooled output of every position: no causal mask."""
  _, _, src = siglip_ckpt
  cfg = convert.tower_config_from_hf(src, 'text')
  cfg.pool = 'mean'
  params = {'backbone': convert.load_tower_params(src, 'text'),
            'proj': {'kernel': convert.load_projection(src, 'text')}}
  ids, mask = _text_inputs()
  changed = ids.copy()
  changed[0, -1] = (ids[0, -1] + 1) % VOCAB
  _, a, _ = _apply(stbir.TextEncoder(cfg, cfg.projection_size), params, ids, mask)
  _, b, _ = _apply(stbir.TextEncoder(cfg, cfg.projection_size), params, changed, mask)
  assert float(jnp.max(jnp.abs(a[0, 0] - b[0, 0]))) > 1e-3


def _batch(res, length):
  return {'image': jnp.zeros((1, res, res, 3), jnp.uint8),
          'sketch': jnp.zeros((1, res, res), jnp.uint8),
          'text_ids': jnp.zeros((1, length), jnp.int32),
          'text_mask': jnp.ones((1, length), jnp.int32), 'has_sketch': jnp.ones((1,), bool),
          'has_text': jnp.ones((1,), bool)}


def test_siglip_variant_loads_a_checkpoint_directory(siglip_ckpt):
  """configs/base.py:siglip pointed at a saved checkpoint: the training path (make_model,
  init_from_pretrained) reproduces HF's normalised image and text embeddings from uint8
  pixels (mean 0.5, std 0.5) and token ids."""
  name, model, src = siglip_ckpt
  config = base.siglip_towers(base.get_config('siglip'), src)
  assert config.model.sketch.init == config.model.photo.init == config.model.text.init == src
  assert (config.data.resolution, config.data.max_text_len, config.data.tokenizer) == (
      IMAGE, 16, src)
  assert config.loss.kind == 'sigmoid'
  net = stbir.STBIR.from_config(config)
  shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), _batch(IMAGE, TEXT_LEN))['params']
  params = jax.tree.map(lambda x: jnp.full(x.shape, 0.5, x.dtype), shapes)
  loaded = convert.init_from_pretrained(config, params)
  np.testing.assert_array_equal(loaded['temperature']['bias'], 0.5)   # not from the checkpoint
  np.testing.assert_array_equal(loaded['photo']['proj']['kernel'], np.eye(HIDDEN))
  image = np.random.RandomState(5).randint(0, 256, (2, IMAGE, IMAGE, 3)).astype(np.uint8)
  ids, mask = _text_inputs()
  g = jax.jit(functools.partial(net.apply, method=stbir.STBIR.encode_gallery))(
      {'params': loaded}, jnp.asarray(image))
  t = jax.jit(functools.partial(net.apply, method=stbir.STBIR.encode_text))(
      {'params': loaded}, jnp.asarray(ids), jnp.asarray(mask))
  with torch.no_grad():
    ref_g, _ = _hf_image_features(model, (image / 255.0 - 0.5).astype(np.float32) / 0.5)
    ref_t, _ = _hf_text_features(model, ids, mask)
  close(f'{name}_encode_gallery', g, torch.nn.functional.normalize(ref_g, dim=-1))
  close(f'{name}_encode_text', t, torch.nn.functional.normalize(ref_t, dim=-1))


def test_siglip_variant_towers_are_those_of_siglip_base(tmp_path):
  """The variant's offline tower shapes equal what the default checkpoint's config gives
  (transformers' SiglipConfig defaults are google/siglip-base-patch16-224's)."""
  transformers.SiglipConfig().save_pretrained(str(tmp_path))
  from_checkpoint = base.siglip_towers(base.get_config('siglip'), str(tmp_path))
  static = base.get_config('siglip')
  for group in ('sketch', 'photo', 'text'):
    want = dict(from_checkpoint.model[group], init=base.SIGLIP)
    assert dict(static.model[group]) == want, group
  assert static.model.embed_dim == 768 and static.data.resolution == 224
  assert static.data.tokenizer == base.SIGLIP


def test_siglip_variant_refuses_towers_of_different_embedding_sizes(tmp_path):
  cfg = _tiny_config(1)
  cfg.text_config.projection_size = 24
  cfg.save_pretrained(str(tmp_path))
  assert convert.tower_config_from_hf(str(tmp_path), 'text').projection_size == 24
  with pytest.raises(ValueError, match='projection_size 24; not a SigLIP dual encoder'):
    base.siglip_towers(base.get_config('siglip'), str(tmp_path))


def test_siglip_vision_without_head_is_refused(tmp_path):
  cfg = _tiny_config(1)
  cfg.vision_config.vision_use_head = False
  cfg.save_pretrained(str(tmp_path))
  with pytest.raises(convert.ConvertError, match='vision_use_head=False'):
    convert.tower_config_from_hf(str(tmp_path), 'vision')


# ------------------------------------------------------------------------------- sigmoid loss

# Q, G unit 2-D vectors; S = Q G^T = [[0.8, 0.0], [0.6, 1.0]].
Q2 = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
G2 = np.array([[0.8, 0.6], [0.0, 1.0]], np.float32)


def _ls(x):   # log sigmoid
  return -np.log1p(np.exp(-x))


def test_sigmoid_loss_2x2_hand_computed():
  # z = 2*S - 1: [[0.6, -1.0], [0.2, 1.0]]; positives on the diagonal, negatives off it.
  row0 = -_ls(0.6) - _ls(1.0)           # -log sig(z00) - log sig(-z01)
  row1 = -_ls(1.0) - _ls(-0.2)          # -log sig(z11) - log sig(-z10)
  np.testing.assert_allclose(losses.per_example_sigmoid(Q2, G2, 2.0, -1.0), [row0, row1],
                             rtol=1e-6)
  np.testing.assert_allclose(losses.sigmoid(Q2, G2, 2.0, -1.0), (row0 + row1) / 2, rtol=1e-6)
  # log(1+e^-.6) = .43749, log(1+e^-1) = .31326, log(1+e^.2) = .79814:
  # rows .75075 and 1.11140, mean .93107.
  np.testing.assert_allclose(float(losses.sigmoid(Q2, G2, 2.0, -1.0)), 0.93107, atol=1e-5)


def test_sigmoid_loss_masks_weights_and_padding():
  # Same instance: the negative (0, 1) / (1, 0) is dropped, only the positives remain.
  same = losses.per_example_sigmoid(Q2, G2, 2.0, -1.0, instance=np.array([7, 7]))
  np.testing.assert_allclose(same, [-_ls(0.6), -_ls(1.0)], rtol=1e-6)
  # Negative weight 3 on (0, 1) only.
  w = np.array([[1.0, 3.0], [1.0, 1.0]], np.float32)
  weighted = losses.per_example_sigmoid(Q2, G2, 2.0, -1.0, negative_weights=w)
  np.testing.assert_allclose(weighted, [-_ls(0.6) - 3 * _ls(1.0), -_ls(1.0) - _ls(-0.2)],
                             rtol=1e-6)
  # Row 1 padding: no query (0) and no negative for row 0; the mean is over row 0 only.
  valid = np.array([True, False])
  np.testing.assert_allclose(losses.per_example_sigmoid(Q2, G2, 2.0, -1.0, valid=valid),
                             [-_ls(0.6), 0.0], rtol=1e-6)
  np.testing.assert_allclose(losses.sigmoid(Q2, G2, 2.0, -1.0, valid=valid), -_ls(0.6),
                             rtol=1e-6)


def test_sigmoid_loss_matches_hf_siglip_loss_formula():
  rng = np.random.RandomState(0)
  q = rng.randn(5, 8).astype(np.float32)
  g = rng.randn(5, 8).astype(np.float32)
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  g /= np.linalg.norm(g, axis=1, keepdims=True)
  # transformers SiglipModel.forward(return_loss=True), logits_per_text = scale * t i^T + bias.
  logits = torch.from_numpy(q @ g.T) * 10.0 - 10.0
  sign = 2 * torch.eye(5) - 1
  ref = -torch.nn.functional.logsigmoid(sign * logits).sum(-1).mean()
  np.testing.assert_allclose(float(losses.sigmoid(q, g, 10.0, -10.0)), float(ref), rtol=1e-5)


def test_contrastive_selects_the_loss_kind_and_refuses_others():
  logits = {'logit_scale': 2.0, 'logit_bias': -1.0}
  np.testing.assert_allclose(losses.contrastive('sigmoid', Q2, G2, logits),
                             losses.sigmoid(Q2, G2, 2.0, -1.0))
  np.testing.assert_allclose(losses.contrastive('info_nce', Q2, G2, logits),
                             losses.info_nce(Q2, G2, 2.0))
  with pytest.raises(ValueError, match="config.loss.kind='hinge'; valid: info_nce, sigmoid"):
    losses.contrastive('hinge', Q2, G2, logits)


@pytest.mark.slow   # minutes under shared CPU load: the tiny model's full loss compiles slowly
@pytest.mark.parametrize('accum', [1, 2])
def test_sigmoid_kind_trains_the_logit_bias_through_the_train_step(accum):
  """config.loss.kind='sigmoid' end to end: the model grows temperature/bias (init -10), the
  stage's contrastive term is the sigmoid loss, and the bias gets a gradient (accum 2: through
  the GradCache path, which fetches the logits separately). The single-modality term calls the
  same losses.contrastive; it is left out to keep the compile short."""
  config = _tiny.tiny_config(('contrastive',))
  config.loss.kind = 'sigmoid'
  config.loss.init_temperature = 0.1
  config.category.enabled = False      # no intra-category weights: the plain loss
  config.stages[0].train = list(stages.MODEL_GROUPS)
  config.train.grad_accum_steps = accum
  config_checks.validate_config(config)
  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, ['thing'])
  params = train_step.init_state(config, model, constants, jax.random.PRNGKey(0)).params
  np.testing.assert_allclose(params['temperature']['bias'], -10.0)
  batch = _tiny.random_batch(config)
  stage = stages.build_stages(config)[0]
  fn = jax.jit(train_step.make_value_and_grad(config, model, stage, constants))
  (_, (terms, per_example, scale)), grads = fn(params, batch)
  out = jax.jit(model.apply)(stbir.model_variables(params), batch)
  np.testing.assert_allclose(out['logit_bias'], -10.0)
  np.testing.assert_allclose(scale, 10.0, rtol=1e-5)
  want = losses.sigmoid(out['query'], out['gallery'], 10.0, -10.0,
                        instance=batch['instance'])
  np.testing.assert_allclose(terms['contrastive'], want, rtol=1e-4)
  np.testing.assert_allclose(np.mean(per_example), want, rtol=1e-4)
  assert abs(float(grads['temperature']['bias'])) > 1e-3
  config.loss.kind = 'hinge'
  with pytest.raises(config_checks.ConfigError, match="loss.kind='hinge'"):
    config_checks.validate_config(config)
