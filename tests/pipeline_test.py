"""TFDS builder + Grain pipeline: build a tiny STBIR-Synth, read it back.

The generator is a stub with the API of stbir_jax.data.synth (records whose pixels spell
their ids), so every assertion below checks exact values; one test runs the real generator when
it is importable.
"""

import importlib
import os
import shutil
import sys
import types

import numpy as np
import pytest

from configs import base
from stbir_jax.data import datasets
from stbir_jax.data import tokenizer as tokenizer_lib
from stbir_jax.data.synth.spec import SynthSpec  # the stub replaces the generator, not its spec

# ------------------------------------------------------------------------------------ stub

STUB_CONFIGS = {'shoes': ('boot', 'sneaker', 'heel'), 'chairs': ('armchair', 'stool'),
                'daily': ('mug', 'lamp', 'kettle', 'vase')}
SPLIT_NAMES = ('train', 'validation', 'test')


def _families(split, spec):
  return {'train': spec.train_families, 'validation': spec.validation_families,
          'test': spec.test_families}[split]


def stub_num_instances(config_name, split, spec):
  del config_name
  return _families(split, spec) * spec.structural_variants * spec.appearance_variants


def stub_counts(instance, spec):
  """(#sketches, #texts) of an instance: the test split has missing and uneven modalities."""
  return {1: (0, spec.texts_per_instance), 2: (spec.sketches_per_instance, 0),
          3: (1, spec.texts_per_instance + 1)}.get(instance % 5, (spec.sketches_per_instance,
                                                                   spec.texts_per_instance))


def stub_text(instance, j):
  return f'photo {instance} text {j}'


def stub_generate(config_name, split, spec):
  per = spec.structural_variants * spec.appearance_variants
  first_family = sum(_families(s, spec) for s in SPLIT_NAMES[:SPLIT_NAMES.index(split)])
  r = spec.resolution
  for f in range(first_family, first_family + _families(split, spec)):
    for k in range(per):
      instance = f * per + k
      s, t = stub_counts(instance, spec) if split == 'test' else (
          spec.sketches_per_instance, spec.texts_per_instance)
      image = np.full((r, r, 3), 7, np.uint8)
      image[0, 0] = (instance, f, len(config_name))
      sketches = np.zeros((s, r, r, 1), np.uint8)
      for j in range(s):
        sketches[j, 0, 0, 0] = j + 1
        sketches[j, 0, 1, 0] = instance
        sketches[j, 5:9, 3, 0] = [1, 2, 3, 4]
      yield dict(image=image, sketches=sketches, texts=[stub_text(instance, j) for j in range(t)],
                 category=f % len(STUB_CONFIGS[config_name]), family=f, instance=instance,
                 photo_id=f'{config_name}_{instance}')


def _stub_module():
  m = types.ModuleType('stbir_jax.data.synth')
  m.CONFIGS, m.SPLITS, m.SynthSpec = STUB_CONFIGS, SPLIT_NAMES, SynthSpec
  m.num_instances, m.generate = stub_num_instances, stub_generate
  return m


@pytest.fixture(scope='module')
def stub():
  """Installs the stub generator for the module."""
  saved = sys.modules.get('stbir_jax.data.synth')
  sys.modules['stbir_jax.data.synth'] = _stub_module()
  yield
  if saved is None:
    sys.modules.pop('stbir_jax.data.synth', None)
  else:
    sys.modules['stbir_jax.data.synth'] = saved


def smoke_config(data_dir, configs=('shoes',)):
  c = base.get_config('smoke')
  c.data.data_dir = str(data_dir)
  c.data.configs = list(configs)
  c.data.synth.seed = 7  # never the default spec: exercises the spec-named builder configs
  return c


@pytest.fixture(scope='module')
def built(stub, tmp_path_factory):
  del stub
  from stbir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path_factory.mktemp('tfds')
  config = smoke_config(data_dir, ('shoes', 'chairs'))
  pipeline.ensure_built(config.data)
  return config


def _pipeline():
  from stbir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline


def _train_iterator(config, **kwargs):
  """The pipeline's train stream of a run config, as train.py asks for it."""
  kwargs.setdefault('seed', config.train.seed)
  return _pipeline().train_iterator(config.data, batch_size=config.train.batch_size, **kwargs)


def _eval_gallery(config, *args, **kwargs):
  batch_size = config.evals.retrieval.batch_size
  return _pipeline().eval_gallery(config.data, *args, batch_size=batch_size, **kwargs)


def _eval_queries(config, *args, **kwargs):
  batch_size = config.evals.retrieval.batch_size
  return _pipeline().eval_queries(config.data, *args, batch_size=batch_size, **kwargs)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ------------------------------------------------------------------------------------ builder


def test_builder_names_and_files(built):
  from stbir_jax.data import stbir_synth  # pylint: disable=g-import-not-at-top
  spec = SynthSpec.from_config(built.data)
  assert stbir_synth.spec_name('shoes', SynthSpec()) == 'shoes'
  name = stbir_synth.spec_name('shoes', spec)
  assert name == 'shoes_r32_f4-1-2_k2m2_s2t2_seed7'
  b = stbir_synth.builder_for('shoes', spec, built.data.data_dir)
  assert b.info.file_format.value == 'array_record'
  assert {s: b.info.splits[s].num_examples for s in SPLIT_NAMES} == dict(
      train=16, validation=4, test=8)
  assert os.path.isdir(os.path.join(built.data.data_dir, 'stbir_synth', name, '1.0.0'))
  # Generation order is kept on disk (family-major); decoded values round-trip.
  rec = b.as_data_source('test')[3]
  assert rec['instance'] == 23 and rec['family'] == 5 and rec['photo_id'] == b'shoes_23'
  assert rec['image'][0, 0].tolist() == [23, 5, 5] and rec['image'].shape == (32, 32, 3)
  assert [t.decode() for t in rec['texts']] == [stub_text(23, j) for j in range(3)]
  assert len(rec['sketches']) == 1 and rec['sketches'][0][5:9, 3, 0].tolist() == [1, 2, 3, 4]
  with pytest.raises(ValueError, match='valid configurations: shoes, chairs, daily'):
    stbir_synth.builder_for('boots', spec, built.data.data_dir)


# ------------------------------------------------------------------------------------ train


def test_train_batch_shapes_and_values(built):
  pipeline = _pipeline()
  batch = next(_train_iterator(built))
  shapes = {k: (v.shape, v.dtype.name) for k, v in batch.items()}
  assert shapes == {
      'image': ((8, 32, 32, 3), 'uint8'), 'sketch': ((8, 32, 32), 'uint8'),
      'text_ids': ((8, 32), 'int32'), 'text_mask': ((8, 32), 'int32'),
      'has_sketch': ((8,), 'bool'), 'has_text': ((8,), 'bool'), 'category': ((8,), 'int32'),
      'instance': ((8,), 'int32'), 'family': ((8,), 'int32')}
  assert batch['has_sketch'].all() and batch['has_text'].all()
  tok = tokenizer_lib.get_tokenizer('bert_uncased')
  for row in range(8):
    k, local = divmod(int(batch['instance'][row]), datasets.ID_STRIDE)
    # The image is the instance's photo; the sketch and text are one of its own.
    assert batch['image'][row, 0, 0, 0] == local % 256
    assert batch['image'][row, 0, 0, 2] == len(['shoes', 'chairs'][k])
    assert batch['sketch'][row, 0, 1] == local and batch['sketch'][row, 0, 0] in (1, 2)
    text = tok.hf_tokenizer.decode(batch['text_ids'][row], skip_special_tokens=True)
    assert text in (stub_text(local, 0), stub_text(local, 1))
    assert batch['text_mask'][row].sum() == 6  # [CLS] photo N text j [SEP]
    assert batch['family'][row] == k * datasets.ID_STRIDE + local // 4
    offset = 0 if k == 0 else len(STUB_CONFIGS['shoes'])
    assert batch['category'][row] == offset + (local // 4) % len(STUB_CONFIGS[['shoes',
                                                                                 'chairs'][k]])
  assert pipeline.category_names(built.data) == ['boot', 'sneaker', 'heel', 'armchair', 'stool']


def test_train_family_grouped_epochs(built):
  it = _train_iterator(built)
  epoch = 32 // 8  # 2 configurations x 16 train photos
  seen = []
  for _ in range(3 * epoch):
    b = next(it)
    for g in range(2):  # family_group = 4: rows [0:4] and [4:8] are one family each
      fam = b['family'][4 * g:4 * g + 4]
      assert (fam == fam[0]).all(), b['family']
    seen.append(b['instance'])
  for e in range(3):  # every epoch sees every photo exactly once
    inst = np.concatenate(seen[e * epoch:(e + 1) * epoch])
    assert len(set(inst.tolist())) == 32
  assert not np.array_equal(np.concatenate(seen[:epoch]), np.concatenate(seen[epoch:2 * epoch]))


def test_train_determinism_and_exact_resume(built):
  a = _take(_train_iterator(built), 6)
  b = _take(_train_iterator(built), 6)
  for x, y in zip(a, b, strict=True):
    _same(x, y)
  c = next(_train_iterator(built, seed=1))
  assert not np.array_equal(a[0]['instance'], c['instance'])

  it = _train_iterator(built)
  _take(it, 5)  # past the first epoch
  state = it.get_state()
  rest = _take(it, 3)
  resumed = _train_iterator(built)
  resumed.set_state(state)
  for x, y in zip(rest, _take(resumed, 3), strict=True):
    _same(x, y)
  for x, y in zip(a[5:], rest, strict=False):   # the one batch both streams hold
    _same(x, y)


def test_process_shards_concatenate_to_global_batch(built):
  full = _take(_train_iterator(built), 5)
  p0 = _take(_train_iterator(built, process_index=0, process_count=2), 5)
  p1 = _take(_train_iterator(built, process_index=1, process_count=2), 5)
  for f, a, b in zip(full, p0, p1, strict=True):
    assert a['image'].shape[0] == 4
    _same(f, {k: np.concatenate([a[k], b[k]]) for k in f})
  with pytest.raises(ValueError, match='not divisible by 3'):
    _train_iterator(built, process_index=0, process_count=3)


def test_epoch_order_groups():
  pipeline = _pipeline()
  family = np.repeat(np.arange(5), 6)  # families of 6, groups of 3
  order = pipeline.epoch_order(family, 3, seed=0, epoch=0)
  assert sorted(order.tolist()) == list(range(30))
  groups = family[order].reshape(10, 3)
  assert (groups == groups[:, :1]).all()
  np.testing.assert_array_equal(order, pipeline.epoch_order(family, 3, seed=0, epoch=0))
  assert not np.array_equal(order, pipeline.epoch_order(family, 3, seed=0, epoch=1))


# ------------------------------------------------------------------------------------ eval


def test_eval_gallery_covers_every_photo_once(built):
  built = built.copy_and_resolve_references()
  built.evals.retrieval.batch_size = 3
  batches = list(_eval_gallery(built, 'chairs', 'test'))
  assert [b['valid'].tolist() for b in batches] == [[True] * 3, [True] * 3, [True, True, False]]
  assert {k: (v.shape, v.dtype.name) for k, v in batches[0].items()} == {
      'image': ((3, 32, 32, 3), 'uint8'), 'instance': ((3,), 'int32'),
      'category': ((3,), 'int32'), 'family': ((3,), 'int32'), 'valid': ((3,), 'bool')}
  inst = np.concatenate([b['instance'][b['valid']] for b in batches])
  assert inst.tolist() == [datasets.ID_STRIDE + i for i in range(20, 28)]
  assert batches[-1]['instance'][2] == 0 and not batches[-1]['image'][2].any()
  assert datasets.dataset_sizes(built.data, 'chairs', 'test')['photos'] == 8


def test_eval_queries_each_once(built):
  spec = SynthSpec.from_config(built.data)
  tok = tokenizer_lib.get_tokenizer('bert_uncased')
  batches = list(_eval_queries(built, 'shoes', 'test'))
  expected = {}
  for instance in range(20, 28):
    s, t = stub_counts(instance, spec)
    for j in range(max(s, t)):
      expected[(instance, j)] = (j < s, t > 0, stub_text(instance, j % t) if t else None)
  assert datasets.dataset_sizes(built.data, 'shoes', 'test') == dict(photos=8,
                                                                     queries=len(expected))
  assert len(batches) == -(-len(expected) // 8)
  got = {}
  for b in batches:
    assert b['sketch'].shape == (8, 32, 32) and b['text_ids'].shape == (8, 32)
    for row in np.flatnonzero(b['valid']):
      key = (int(b['instance'][row]), int(b['query_index'][row]))
      assert key not in got
      has_s, has_t = bool(b['has_sketch'][row]), bool(b['has_text'][row])
      if has_s:
        assert b['sketch'][row, 0, 0] == key[1] + 1 and b['sketch'][row, 0, 1] == key[0]
      else:
        assert not b['sketch'][row].any()
      text = (tok.hf_tokenizer.decode(b['text_ids'][row], skip_special_tokens=True)
              if has_t else None)
      assert has_t or not b['text_mask'][row].any()
      got[key] = (has_s, has_t, text)
    assert not b['has_sketch'][~b['valid']].any() and not b['text_mask'][~b['valid']].any()
  assert got == expected
  assert sum(b['valid'].sum() for b in batches) == len(expected)


def test_eval_process_shards(built):
  full = list(_eval_queries(built, 'shoes', 'test'))
  parts = [list(_eval_queries(built, 'shoes', 'test', process_index=p, process_count=2))
           for p in range(2)]
  assert len(parts[0]) == len(parts[1]) == len(full)
  for f, a, b in zip(full, *parts, strict=True):
    _same(f, {k: np.concatenate([a[k], b[k]]) for k in f})


# ------------------------------------------------------------------------------------ errors


def test_unknown_names(built, tmp_path):
  pipeline = _pipeline()
  with pytest.raises(ValueError, match="'boots'.*valid configurations: shoes, chairs, daily"):
    _train_iterator(smoke_config(tmp_path, ('boots',)))
  with pytest.raises(ValueError, match="Unknown split 'dev'; valid splits: train, validation"):
    _eval_gallery(built, 'shoes', 'dev')
  with pytest.raises(ValueError, match="'daily' is not in config.data.configs"):
    _eval_gallery(built, 'daily', 'test')
  with pytest.raises(ValueError, match='not built in .*ensure_built'):
    _eval_gallery(smoke_config(tmp_path), 'shoes', 'test')
  c = smoke_config(tmp_path, ('shoev2',))
  c.data.name = 'shoev2'
  with pytest.raises(ValueError, match=f'No prepared dataset .shoev2. in {tmp_path}/shoev2/1.0.0'):
    pipeline.ensure_built(c.data)
  c.data.name = 'shoesv9'
  with pytest.raises(ValueError, match='valid names: stbir_synth, shoev2'):
    pipeline.category_names(c.data)


def test_decode_error_names_the_record(built, monkeypatch):
  source = datasets.data_source(built.data, 'shoes', 'validation')
  real = source.parse

  def corrupt(index, raw=None):
    rec = real(index, raw)
    if index == 2:
      rec['image'] = b'not a png'
    return rec

  monkeypatch.setattr(source, 'parse', corrupt)
  with pytest.raises(ValueError, match=r"stbir_synth/shoes at .* split 'validation' record 2 "
                                       'failed to decode'):
    list(_eval_gallery(built, 'shoes', 'validation'))


def _png(array) -> bytes:
  import io  # pylint: disable=g-import-not-at-top

  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = io.BytesIO()
  Image.fromarray(array).save(out, format='PNG')
  return out.getvalue()


# Ways a stored record can be bad, as `parse` would return (or raise) them.
CORRUPTIONS = {
    'png': lambda rec: dict(rec, image=b'not a png'),
    'size': lambda rec: dict(rec, image=_png(np.zeros((16, 16, 3), np.uint8))),
    'text': lambda rec: dict(rec, texts=[b'', b' ']),
    'parse': None,  # the record's bytes do not parse at all
}


@pytest.fixture
def corrupt_record(built, monkeypatch):
  """corrupt_record(kind, index): record `index` of shoes/train becomes bad (fresh scans)."""
  pipeline = _pipeline()
  source = datasets.data_source(built.data, 'shoes', 'train')
  real = source.parse

  def install(kind, bad_index):
    def parse(index, raw=None):
      if index == bad_index and kind == 'parse':
        raise pipeline.DataError(f'{source.where(index)} failed to parse: DecodeError: junk')
      rec = real(index, raw)
      return CORRUPTIONS[kind](rec) if index == bad_index else rec
    monkeypatch.setattr(source, 'parse', parse)
    datasets._scan.cache_clear()  # pylint: disable=protected-access

  yield install
  datasets._scan.cache_clear()  # pylint: disable=protected-access


def _skip_config(built):
  c = built.copy_and_resolve_references()
  c.data.on_bad_record = 'skip'
  return c


def _first_shoe_row(batch):
  """A row (not the last) holding a shoes train record; shoes train record k is instance k."""
  return next(r for r in range(7) if batch['instance'][r] < datasets.ID_STRIDE)


@pytest.mark.parametrize('kind', sorted(CORRUPTIONS))
def test_bad_record_error_names_the_record(built, corrupt_record, kind):
  pipeline = _pipeline()
  reference = next(_train_iterator(built))
  bad = int(reference['instance'][_first_shoe_row(reference)])
  corrupt_record(kind, bad)
  what = 'failed to parse' if kind == 'parse' else 'failed to decode'
  # The default policy: the first batch holding the record fails, naming it and the option.
  with pytest.raises(pipeline.DataError, match=rf"shoes at .* split 'train' record {bad} "
                                               rf"{what}.*on_bad_record='skip'"):
    next(_train_iterator(built))
  # Evaluation raises under either policy (dropping photos would change the protocol); the
  # gallery reads no texts, the queries no photos.
  reader = _eval_queries if kind == 'text' else _eval_gallery
  with pytest.raises(pipeline.DataError, match=f"split 'train' record {bad} {what}"):
    list(reader(_skip_config(built), 'shoes', 'train'))


@pytest.mark.parametrize('kind', sorted(CORRUPTIONS))
def test_bad_record_skip_substitutes_next_good_record(built, corrupt_record, kind, monkeypatch,
                                                       caplog):
  pipeline = _pipeline()
  config = _skip_config(built)
  reference = _take(_train_iterator(built), 8)  # two epochs, no bad record
  row = _first_shoe_row(reference[0])
  bad = int(reference[0]['instance'][row])
  corrupt_record(kind, bad)
  monkeypatch.setattr(pipeline, '_skip_warnings', 0)
  caplog.set_level('WARNING')
  it = _train_iterator(config)
  got = _take(it, 4)
  state = it.get_state()
  got += _take(it, 4)
  for b in got:  # full batches, the bad record never in them
    assert b['image'].shape[0] == 8 and b['instance'].shape == (8,)
    assert bad not in b['instance'].tolist()
  counts = [int(b[pipeline.SKIPPED_KEY].sum()) for b in got]
  assert sum(counts[:4]) == 1 and sum(counts[4:]) == 1  # once per epoch
  assert f"split 'train' record {bad}" in caplog.text
  if kind != 'parse':  # (an unparsable record has no family: the epoch order differs)
    first = got[0]
    assert counts[0] == 1 and first[pipeline.SKIPPED_KEY].tolist() == [
        int(r == row) for r in range(8)]
    # The bad row holds the next element's record; every other row is unchanged.
    assert first['instance'][row] == reference[0]['instance'][row + 1]
    np.testing.assert_array_equal(first['image'][row], reference[0]['image'][row + 1])
    others = np.arange(8) != row
    for k in reference[0]:
      np.testing.assert_array_equal(first[k][others], reference[0][k][others], err_msg=k)
  # Deterministic: a resumed iterator repeats the stream, skips included.
  resumed = _train_iterator(config)
  resumed.set_state(state)
  for x, y in zip(got[4:], _take(resumed, 4), strict=True):
    _same(x, y)


def test_bad_record_policy_is_validated(built):
  c = built.copy_and_resolve_references()
  c.data.on_bad_record = 'ignore'
  with pytest.raises(ValueError, match="on_bad_record='ignore'; valid policies: error, skip"):
    _train_iterator(c)


def test_prepared_dataset_directory_is_read(built, tmp_path):
  """A non-synthetic name reads DATA_DIR/<entry>/1.0.0 with tfds.builder_from_directory."""
  pipeline = _pipeline()
  src = datasets.dataset_path(built.data, 'shoes')
  shutil.copytree(src, tmp_path / 'myshoes' / '1.0.0')
  c = smoke_config(tmp_path, ('myshoes',))
  c.data.name = 'manifest'
  pipeline.ensure_built(c.data)  # exists: nothing to do
  assert pipeline.category_names(c.data) == list(STUB_CONFIGS['shoes'])
  gallery = list(_eval_gallery(c, 'myshoes', 'test'))
  assert np.concatenate([b['instance'] for b in gallery]).tolist() == list(range(20, 28))
  assert next(_train_iterator(c))['image'].shape == (8, 32, 32, 3)
  c.data.resolution = 64
  with pytest.raises(ValueError, match='stores 32 px images but config.data.resolution=64'):
    _eval_gallery(c, 'myshoes', 'test')


def test_real_generator_smoke(stub, tmp_path, monkeypatch):
  """The real stbir_jax.data.synth (when present) builds and reads back at smoke size."""
  del stub  # swapped out for the real module here
  monkeypatch.delitem(sys.modules, 'stbir_jax.data.synth')
  try:
    synthetic = importlib.import_module('stbir_jax.data.synth')
  except ImportError:
    pytest.skip('stbir_jax.data.synth is not written yet')
  pipeline = _pipeline()
  c = smoke_config(tmp_path)
  pipeline.ensure_built(c.data)
  b = next(_train_iterator(c))
  assert b['image'].shape == (8, 32, 32, 3) and b['has_sketch'].all() and b['has_text'].all()
  assert b['sketch'].max() > 0 and b['text_mask'].sum(1).min() > 2
  assert (b['family'][:4] == b['family'][0]).all()
  g = list(_eval_gallery(c, 'shoes', 'test'))
  assert sum(int(x['valid'].sum()) for x in g) == synthetic.num_instances(
      'shoes', 'test', synthetic.SynthSpec.from_config(c.data))


@pytest.mark.slow
def test_worker_processes_match_in_process(built):
  """num_workers > 0 (Grain worker processes) yields the same stream and resumes exactly."""
  want = _take(_train_iterator(built), 6)
  c = built.copy_and_resolve_references()
  c.data.num_workers = 2
  it = _train_iterator(c)
  got = _take(it, 3)
  state = it.get_state()
  got += _take(it, 3)
  it.close()
  for x, y in zip(want, got, strict=True):
    _same(x, y)
  it = _train_iterator(c)
  it.set_state(state)
  for x, y in zip(want[3:], _take(it, 3), strict=True):
    _same(x, y)
  it.close()
