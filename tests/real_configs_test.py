"""configs/base.py:<real dataset> variants read prepared fixture data through the pipeline, and
one of them trains and evaluates end to end with its protocol."""

import jax
import numpy as np
import pytest

from configs import base
from stbir_jax import train
from stbir_jax.data import pipeline, prepare
from stbir_jax.data.formats import fixtures

R = 32
TREES = {
    'shoev2': lambda root: fixtures.qmul_tree(root),
    'chairv2': lambda root: fixtures.qmul_tree(root),
    'sketchy': fixtures.sketchy_tree,
    'fscoco': fixtures.fscoco_tree,
    'manifest': fixtures.manifest_tree,
}


def _prepared_config(name, tmp_path):
  src = TREES[name](tmp_path / 'src')
  out = tmp_path / 'data'
  assert prepare.main([f'--format={name}', f'--src={src}', f'--out={out}', f'--resolution={R}',
                       '--quiet', '--allow_missing']) == 0
  config = base.get_config(name)
  config.data.data_dir = str(out)
  config.data.resolution = R
  config.data.tokenizer = 'bert_uncased'  # the CLIP tokenizer needs the hub
  return config


def test_real_variants_are_listed_and_follow_their_protocols():
  assert set(base.REAL_DATASETS) == {'shoev2', 'chairv2', 'sketchy', 'fscoco', 'manifest'}
  assert set(base.REAL_DATASETS) <= set(base.VARIANTS)
  for name in base.REAL_DATASETS:
    c = base.get_config(name)
    assert (c.data.name, list(c.data.configs)) == (name, [name])
    assert c.eval.gallery_scope == ('category' if name == 'sketchy' else 'all')
    assert c.model.photo.init == 'openai/clip-vit-base-patch16'
    train.validate_config(c, 1, 1)


@pytest.mark.parametrize('name', sorted(TREES))
def test_real_variant_reads_its_prepared_data(name, tmp_path):
  config = _prepared_config(name, tmp_path)
  config.train.batch_size = 4
  names = pipeline.category_names(config)
  batch = next(pipeline.train_iterator(config))
  assert batch['image'].shape == (4, R, R, 3) and batch['sketch'].shape == (4, R, R)
  assert batch['text_ids'].shape == (4, config.data.max_text_len)
  assert np.all((batch['category'] >= 0) & (batch['category'] < len(names)))
  gallery = list(pipeline.eval_gallery(config, name, 'test'))
  assert sum(int(b['valid'].sum()) for b in gallery) >= 1


def test_sketchy_variant_trains_and_ranks_within_the_category(tmp_path):
  config = _prepared_config('sketchy', tmp_path)
  smoke = base.get_config('smoke')
  config.model = smoke.model
  config.data.tokenizer = smoke.data.tokenizer
  config.curriculum = smoke.curriculum
  config.train.update(batch_size=4, num_steps=5, log_every=1, checkpoint_every=5)
  config.optim.warmup_steps = 1
  config.eval.update(batch_size=4, every_steps=5)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  # The one test photo (airplane/a2) is alone in its category: rank 1 whatever the model.
  for mode in config.eval.modes:
    assert results[f'sketchy/{mode}/acc@1'] == 1.0
    assert results[f'sketchy/{mode}/num_queries'] == 1
