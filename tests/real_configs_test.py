"""configs/base.py:<real dataset> variants read prepared fixture data through the pipeline, and
one of them trains and evaluates end to end with its protocol."""

import numpy as np
import pytest

from configs import base
from stbir_jax import config_checks, train
from stbir_jax.data import pipeline, prepare, prepared
from stbir_jax.data import tokenizer as tokenizer_lib
from stbir_jax.data.formats import fixtures

R = 32
# Both QMUL layouts: the train/test folders (shoev2) and the SketchX release (chairv2).
TREES = {
    'shoev2': lambda root: fixtures.qmul_tree(root),
    'chairv2': lambda root: fixtures.qmul_release_tree(root, 'ChairV2'),
    'sketchy': fixtures.sketchy_tree,
    'fscoco': fixtures.fscoco_tree,
    'manifest': fixtures.manifest_tree,
}
# What each fixture tree holds, by hand: split -> {photo id: (#sketches, #texts)}.
QMUL = {'train': {'1001': (2, 0), '1002': (1, 0), '1003': (0, 0)}, 'test': {'2001': (1, 0)}}
EXPECTED = {
    'shoev2': QMUL,
    'chairv2': QMUL,
    'sketchy': {'train': {'airplane/a1': (2, 0), 'cat/c1': (1, 0), 'cat/c2': (0, 0)},
                'test': {'airplane/a2': (1, 0)}},
    'fscoco': {'train': {'11': (1, 1), '21': (1, 2), '22': (0, 0)}, 'test': {'12': (1, 0)}},
    'manifest': {'train': {'photos/p0': (2, 1), 'photos/p3': (0, 1)},
                 'validation': {'two': (1, 1)}, 'test': {'photos/p1': (1, 0)}},
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
    assert c.evals.retrieval.gallery_scope == ('category' if name == 'sketchy' else 'all')
    # Sketchy has no descriptions: a text mode there would have no query to rank.
    assert list(c.evals.retrieval.modes) == (['sketch'] if name == 'sketchy' else
                                             ['sketch', 'text', 'sketch+text'])
    assert c.model.photo.init == 'openai/clip-vit-base-patch16'
    config_checks.validate_config(c, 1, 1)


def _by_instance(config, name, split):
  """The prepared records of a split (read by TFDS, not by the pipeline), keyed by instance."""
  source = prepared.data_source(config.data.data_dir, name, split)
  return {int(r['instance']): r for r in (source[i] for i in range(len(source)))}


def _rows(batches):
  """Batches -> rows, without the padding rows of eval batches (valid False)."""
  for b in batches:
    valid = b.get('valid', np.ones(len(b['instance']), bool))
    for i in np.flatnonzero(valid):
      yield {k: v[i] for k, v in b.items()}


@pytest.mark.parametrize('name', sorted(TREES))
def test_real_variant_reads_its_prepared_data(name, tmp_path):
  config = _prepared_config(name, tmp_path)
  config.train.batch_size = 4
  config.evals.retrieval.batch_size = 2
  names = pipeline.category_names(config.data)
  expected = EXPECTED[name]
  records = {split: _by_instance(config, name, split) for split in expected}
  for split, photos in expected.items():
    got = {r['photo_id'].decode(): (len(r['sketches']), len(r['texts']))
           for r in records[split].values()}
    assert got == photos, split

  tok = tokenizer_lib.get_tokenizer(config.data.tokenizer)
  train_records = records['train']
  # What training reads: Grain, threads and all.
  stream = pipeline.train_iterator(config.data, batch_size=config.train.batch_size,
                                   seed=config.train.seed)
  batches = [next(stream) for _ in range(-(-len(train_records) // 4))]
  assert batches[0]['image'].shape == (4, R, R, 3) and batches[0]['sketch'].shape == (4, R, R)
  assert batches[0]['text_ids'].shape == (4, config.data.max_text_len)
  rows = list(_rows(batches))
  # The first len(train) stream elements are one epoch: every train photo once, with its own
  # image, category and one of its own sketches and texts.
  rows = rows[:len(train_records)]
  assert sorted(int(r['instance']) for r in rows) == sorted(train_records)
  for row in rows:
    rec = train_records[int(row['instance'])]
    np.testing.assert_array_equal(row['image'], rec['image'])
    assert row['category'] == rec['category'] and 0 <= row['category'] < len(names)
    assert bool(row['has_sketch']) == (len(rec['sketches']) > 0)
    if row['has_sketch']:
      assert any(np.array_equal(row['sketch'], s[..., 0]) for s in rec['sketches'])
    assert bool(row['has_text']) == (len(rec['texts']) > 0)
    if row['has_text']:
      ids, _ = tok.encode([t.decode() for t in rec['texts']], config.data.max_text_len)
      assert any(np.array_equal(row['text_ids'], i) for i in ids)

  # Evaluation: every test photo once in the gallery; query j of a photo is its sketch j.
  test_records = records['test']
  gallery = list(_rows(pipeline.eval_gallery(config.data, name, 'test',
                                             batch_size=config.evals.retrieval.batch_size)))
  assert sorted(int(r['instance']) for r in gallery) == sorted(test_records)
  for row in gallery:
    np.testing.assert_array_equal(row['image'], test_records[int(row['instance'])]['image'])
  queries = list(_rows(pipeline.eval_queries(config.data, name, 'test',
                                             batch_size=config.evals.retrieval.batch_size)))
  assert len(queries) == sum(max(s, t) for s, t in expected['test'].values())
  for q in queries:
    rec = test_records[int(q['instance'])]
    if q['has_sketch']:
      np.testing.assert_array_equal(q['sketch'], rec['sketches'][int(q['query_index'])][..., 0])


@pytest.mark.slow   # trains a model: ~4 minutes on 2 cores
def test_sketchy_variant_trains_and_ranks_within_the_category(tmp_path):
  config = _prepared_config('sketchy', tmp_path)
  smoke = base.get_config('smoke')
  config.model = smoke.model
  config.data.tokenizer = smoke.data.tokenizer
  config.curriculum = smoke.curriculum
  config.train.update(batch_size=4, num_steps=5, log_every=1, checkpoint_every=5)
  config.optim.warmup_steps = 1
  config.evals.retrieval.update(batch_size=4, every_steps=5)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  # The one test photo (airplane/a2) is alone in its category: rank 1 whatever the model.
  for mode in config.evals.retrieval.modes:
    assert results[f'sketchy/{mode}/acc@1'] == 1.0
    assert results[f'sketchy/{mode}/num_queries'] == 1
