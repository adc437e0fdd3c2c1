"""Export: exported functions reproduce the live model; broken export directories fail clearly.

The fast tests export freshly initialised parameters of a tiny (1-layer ViT) smoke model; the
slow test trains the real smoke config a few steps and exports it with the CLI.
`make_tiny_export` is shared with the search, demo and notebook tests.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config():
  """configs/base.py:smoke with 1-layer ViT image towers (compiles in seconds on a CPU)."""
  from configs import base  # pylint: disable=g-import-not-at-top
  c = base.get_config('smoke')
  for tower in (c.model.sketch, c.model.photo):
    tower.update(dict(kind='vit', patch_size=8, hidden=16, layers=1, heads=2, mlp_dim=32,
                      pool='cls'))
  return c


def make_tiny_export(out, seed=0, config=None):
  """Exports randomly initialised params of `config` (default tiny_config()) to `out`."""
  import jax  # pylint: disable=g-import-not-at-top

  from stbir_jax import export  # pylint: disable=g-import-not-at-top
  from stbir_jax.models.stbir import STBIR  # pylint: disable=g-import-not-at-top
  config = config or tiny_config()
  model = STBIR(config.model, init_temperature=config.loss.init_temperature)
  r, text_len = config.data.resolution, config.data.max_text_len
  batch = dict(image=np.zeros((1, r, r, 3), np.uint8), sketch=np.zeros((1, r, r), np.uint8),
               text_ids=np.zeros((1, text_len), np.int32),
               text_mask=np.ones((1, text_len), np.int32),
               has_sketch=np.ones(1, bool), has_text=np.ones(1, bool))
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), batch)['params']
  params = jax.tree.map(np.asarray, dict(params))
  export.export_model(config, params, str(out), step=0)
  return config, model, params


def random_inputs(model_like, batch, seed=0):
  r = model_like.resolution
  rng = np.random.default_rng(seed)
  sketch = np.zeros((batch, r, r), np.uint8)
  for b in range(batch):  # a few strokes: lines of increasing order
    for k in range(1, 4):
      y = rng.integers(2, r - 2)
      sketch[b, y, rng.integers(0, r // 2):rng.integers(r // 2, r)] = k
  texts = ['a red leather sneaker', 'blue boot', 'a white canvas loafer with black laces',
           'green', 'a pink suede high heel'][:batch]
  texts += ['x'] * (batch - len(texts))
  image = rng.integers(0, 256, (batch, r, r, 3), dtype=np.uint8)
  has_sketch = np.array([True, False, True, True, False][:batch] + [True] * max(0, batch - 5))
  has_text = np.array([True, True, False, True, True][:batch] + [True] * max(0, batch - 5))
  return sketch, texts, image, has_sketch, has_text


def check_parity(exported, model, params, batch):
  sketch, texts, image, has_sketch, has_text = random_inputs(exported, batch, seed=batch)
  ids, mask = exported.tokenize(texts)
  assert ids.shape == (batch, exported.max_text_len) and ids.dtype == np.int32
  from stbir_jax.models.stbir import STBIR  # pylint: disable=g-import-not-at-top
  got_q = np.asarray(exported.encode_query(sketch, ids, mask, has_sketch, has_text))
  want_q = np.asarray(model.apply({'params': params}, sketch, ids, mask, has_sketch, has_text,
                                  method=STBIR.encode_query))
  got_g = np.asarray(exported.encode_gallery(image))
  want_g = np.asarray(model.apply({'params': params}, image, method=STBIR.encode_gallery))
  assert got_q.shape == (batch, exported.embed_dim) and got_g.shape == (batch, exported.embed_dim)
  np.testing.assert_allclose(got_q, want_q, atol=1e-5, rtol=0)
  np.testing.assert_allclose(got_g, want_g, atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.linalg.norm(got_g, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  out = tmp_path_factory.mktemp('export') / 'model'
  config, model, params = make_tiny_export(out)
  return out, config, model, params


def test_export_matches_live_model_with_symbolic_batch(tiny):
  import stbir_jax  # pylint: disable=g-import-not-at-top
  out, config, model, params = tiny
  exported = stbir_jax.load_exported(str(out))
  assert (exported.resolution, exported.max_text_len, exported.embed_dim) == (
      config.data.resolution, config.data.max_text_len, config.model.embed_dim)
  for batch in (3, 5):  # one serialized function, two batch sizes
    check_parity(exported, model, params, batch)
  # The tokenizer round-trips: the same ids as the training tokenizer.
  from stbir_jax.data.tokenizer import get_tokenizer  # pylint: disable=g-import-not-at-top
  want, _ = get_tokenizer(config.data.tokenizer).encode(['a red shoe'], config.data.max_text_len)
  np.testing.assert_array_equal(exported.tokenize(['a red shoe'])[0], want)
  manifest = json.loads((out / 'manifest.json').read_text())
  assert manifest['inputs']['encode_gallery']['image'] == 'uint8[b,32,32,3]'
  assert (out / 'model_card.md').read_text().startswith('# STBIR model card')


@pytest.mark.parametrize('name,damage', [
    ('params.safetensors', 'missing'),
    ('params.safetensors', 'truncate'),
    ('encode_query.jax', 'garbage'),
    ('encode_gallery.jax', 'missing'),
    ('manifest.json', 'garbage'),
    ('config.json', 'missing'),
    ('tokenizer', 'missing'),
    ('tokenizer/tokenizer.json', 'garbage'),
])
def test_broken_export_names_the_file(tiny, tmp_path, name, damage):
  import stbir_jax  # pylint: disable=g-import-not-at-top
  from stbir_jax.exported import ExportError  # pylint: disable=g-import-not-at-top
  src = tiny[0]
  broken = tmp_path / 'broken'
  shutil.copytree(src, broken)
  path = broken / name
  if damage == 'missing':
    shutil.rmtree(path) if path.is_dir() else path.unlink()
  elif damage == 'truncate':
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
  else:
    path.write_bytes(b'\x00not what you expected{')
  # A file inside tokenizer/ is reported as the tokenizer directory (loaded as a whole).
  with pytest.raises(ExportError, match=name.split('/')[0].replace('.', r'\.')):
    stbir_jax.load_exported(str(broken))


@pytest.mark.slow
def test_train_smoke_then_export_cli(tmp_path):
  """The real path: train configs/base.py:smoke, `python -m stbir_jax.export`, parity."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top

  import stbir_jax  # pylint: disable=g-import-not-at-top
  from configs import base  # pylint: disable=g-import-not-at-top
  from stbir_jax import run_config, train  # pylint: disable=g-import-not-at-top
  from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top
  config = base.get_config('smoke')
  config.data.data_dir = str(tmp_path / 'data')
  config.train.num_steps = 5          # every stage gets at least one step
  config.train.checkpoint_every = 5
  config.evals.retrieval.every_steps = 5
  workdir, out = tmp_path / 'run', tmp_path / 'export'
  train.train_and_evaluate(config, str(workdir))
  proc = subprocess.run(
      [sys.executable, '-m', 'stbir_jax.export', f'--workdir={workdir}', f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Exported step 5' in proc.stdout
  # Orbax's INFO lines about reading the checkpoint stay off a program's output.
  assert 'orbax' not in proc.stderr and 'checkpoint' not in proc.stderr, proc.stderr[-2000:]
  exported = stbir_jax.load_exported(str(out))
  saved = ml_collections.ConfigDict(json.loads((workdir / 'config.json').read_text()))
  model = stbir.STBIR.from_config(saved)
  step, params = run_config.latest_params(str(workdir))
  assert step == 5
  params = jax.tree.map(np.asarray, params)
  for batch in (3, 5):
    check_parity(exported, model, params, batch)
