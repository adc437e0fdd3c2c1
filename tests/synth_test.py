"""STBIR-Synth generator: determinism, splits, twin structure, record schema, texts, errors."""

import collections

import numpy as np
import pytest

from stbir_jax.data import show, synth

SPEC = synth.SynthSpec(resolution=32, train_families=4, validation_families=2, test_families=4,
                           structural_variants=3, appearance_variants=3, sketches_per_instance=2,
                           texts_per_instance=2, seed=7)


def _records(config='shoes', split='test', spec=SPEC):
  return list(synth.generate_with_params(config, split, spec))


@pytest.fixture(scope='module', params=list(synth.CONFIGS))
def items(request):
  return request.param, _records(request.param)


def test_determinism_and_seed():
  a = [r for r, _ in _records(spec=SPEC)]
  b = [r for r, _ in _records(spec=SPEC)]
  c = [r for r, _ in _records(spec=synth.SynthSpec(**{**SPEC.__dict__, 'seed': 8}))]
  for x, y in zip(a, b, strict=True):
    assert x['image'].tobytes() == y['image'].tobytes()
    assert x['sketches'].tobytes() == y['sketches'].tobytes()
    assert x['texts'] == y['texts'] and x['photo_id'] == y['photo_id']
  assert any(x['image'].tobytes() != z['image'].tobytes() for x, z in zip(a, c, strict=True))


def test_one_split_does_not_depend_on_another():
  bigger_train = synth.SynthSpec(**{**SPEC.__dict__, 'train_families': 9})
  a = [r for r, _ in _records(split='test')]
  b = [r for r, _ in _records(split='test', spec=bigger_train)]
  assert [x['image'].tobytes() for x in a] == [y['image'].tobytes() for y in b]


def test_splits_disjoint_and_ids_unique():
  families, instances = {}, []
  for split in synth.SPLITS:
    recs = list(synth.generate('chairs', split, SPEC))
    assert len(recs) == synth.num_instances('chairs', split, SPEC)
    families[split] = {r['family'] for r in recs}
    instances += [r['instance'] for r in recs]
  assert len(families['train']) == 4 and len(families['test']) == 4
  assert not families['train'] & families['validation']
  assert not families['train'] & families['test']
  assert not families['validation'] & families['test']
  assert len(instances) == len(set(instances)) == 10 * 9


def test_twin_structure(items):
  _, recs = items
  by_family = collections.defaultdict(list)
  for r, p in recs:
    by_family[r['family']].append(p)
  for params in by_family.values():
    assert len(params) == SPEC.structural_variants * SPEC.appearance_variants
    for p in params:
      for q in params:
        if p['structural_variant'] == q['structural_variant']:
          assert p['structure'] == q['structure']     # appearance twins: same contour
        else:
          assert p['structure'] != q['structure']
        if p['appearance_variant'] == q['appearance_variant']:
          assert p['appearance'] == q['appearance']   # structural twins: same look
        else:
          assert p['appearance']['main_colour'] != q['appearance']['main_colour']


def test_record_schema_and_strokes(items):
  config, recs = items
  r_ = SPEC.resolution
  for r, p in recs:
    assert set(r) == {'image', 'sketches', 'texts', 'category', 'family', 'instance', 'photo_id'}
    assert r['image'].shape == (r_, r_, 3) and r['image'].dtype == np.uint8
    assert r['sketches'].shape == (SPEC.sketches_per_instance, r_, r_, 1)
    assert r['sketches'].dtype == np.uint8
    assert 0 <= r['category'] < len(synth.CONFIGS[config])
    assert r['instance'] == (r['family'] * 9 + p['structural_variant'] * 3
                             + p['appearance_variant'])
    for sk in r['sketches']:
      values = np.unique(sk)
      assert values[0] == 0 and (sk == 1).sum() > 0       # the outline is stroke 1
      assert values.max() < 255 and len(values) > 3
    assert len(r['texts']) == SPEC.texts_per_instance
    for t in r['texts']:
      assert p['appearance']['main_colour'] in t.split(' ') or \
          p['appearance']['main_colour'] in t.replace(',', ' ').replace('.', ' ').split()


def test_sketch_aligned_with_photo():
  # Sketch strokes fall on the photo's edges (up to the drawer's small offset) far above chance.
  spec = synth.SynthSpec(**{**SPEC.__dict__, 'resolution': 64})
  ratios = []
  for r, _ in list(synth.generate_with_params('daily', 'test', spec))[:8]:
    grey = r['image'].astype(float).mean(-1)
    edge = np.zeros_like(grey)
    edge[1:] += np.abs(np.diff(grey, axis=0))
    edge[:, 1:] += np.abs(np.diff(grey, axis=1))
    near = edge.copy()
    for dy in range(-2, 3):
      for dx in range(-2, 3):
        near = np.maximum(near, np.roll(edge, (dy, dx), (0, 1)))
    sketch = r['sketches'][0, ..., 0] > 0
    ratios.append(near[sketch].mean() / near.mean())
  assert np.median(ratios) > 1.5, ratios


def test_category_balance_and_texts_vague():
  recs = list(synth.generate('daily', 'train', synth.SynthSpec(
      resolution=32, train_families=6, structural_variants=2, appearance_variants=2,
      sketches_per_instance=1, texts_per_instance=3)))
  assert sorted({r['category'] for r in recs}) == list(range(6))
  words = {'round', 'square', 'tall', 'straight', 'flared', 'heel height', 'laces'}
  for r in recs:
    for t in r['texts']:
      assert not any(f' {w} ' in f' {t} ' for w in words), t


def test_errors_list_valid_names():
  with pytest.raises(ValueError, match=r"'boats'.*shoes, chairs, daily"):
    list(synth.generate('boats', 'train', SPEC))
  with pytest.raises(ValueError, match=r"'dev'.*train, validation, test"):
    list(synth.generate('shoes', 'dev', SPEC))
  with pytest.raises(ValueError, match='boats'):
    synth.num_instances('boats', 'train', SPEC)
  with pytest.raises(ValueError, match='appearance_variants'):
    list(synth.generate('shoes', 'test', synth.SynthSpec(appearance_variants=13)))


def test_num_instances_and_from_config():
  from configs import base
  config = base.get_config('smoke')
  spec = synth.SynthSpec.from_config(config.data)
  assert spec.resolution == 32 and spec.structural_variants == 2
  for split in synth.SPLITS:
    n = sum(1 for _ in synth.generate('shoes', split, spec))
    assert n == synth.num_instances('shoes', split, spec) == spec.families(split) * 4
  config.data.synth.bogus = 1
  with pytest.raises(ValueError, match='bogus'):
    synth.SynthSpec.from_config(config.data)


def test_resolutions_and_viewer(tmp_path):
  for res in (128, 224):
    spec = synth.SynthSpec(resolution=res, test_families=1, structural_variants=2,
                               appearance_variants=2, sketches_per_instance=1)
    r = next(synth.generate('chairs', 'test', spec))
    assert r['image'].shape == (res, res, 3) and r['sketches'].shape == (1, res, res, 1)
  grid = show.family_grid('shoes', 'test', 1, SPEC)
  assert grid.size[0] > 3 * 2 * SPEC.resolution
  assert show.sketch_picture(np.array([[0, 1], [2, 0]], np.uint8))[0, 0].tolist() == [255] * 3
