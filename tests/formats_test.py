"""Tests of the format readers (stbir_jax/data/formats/): pairing, splits, broken inputs."""

import json
import pickle

import numpy as np
import pytest

from stbir_jax.data import formats
from stbir_jax.data.formats import common, fixtures


def _read(fmt, src, **options):
  report = common.Report()
  items, cats = formats.get(fmt)(src, report, common.Options(**options))
  return {i.photo_id: i for i in items}, cats, report


def test_unknown_format_lists_valid_names():
  with pytest.raises(common.PrepareError, match='valid formats: shoev2, chairv2'):
    formats.get('shoes')


def test_qmul_pairs_sketches_with_photos_and_splits(tmp_path):
  items, cats, report = _read('shoev2', fixtures.qmul_tree(tmp_path))
  assert cats == ['shoe']
  assert {p: i.split for p, i in items.items()} == {
      '1001': 'train', '1002': 'train', '1003': 'train', '2001': 'test'}
  assert [s.name for s in items['1001'].sketches] == ['1001_1', '1001_2']
  assert items['1003'].sketches == []
  assert report.sketches_without_photo == [str(tmp_path / 'trainA' / '9999_1.png')]


def test_qmul_prefers_svg_then_pickle_over_raster(tmp_path):
  root = fixtures.qmul_tree(tmp_path, svg=True, pickle_variant=True)
  items, _, _ = _read('chairv2', root)
  refs = items['1001'].sketches
  assert [r.path.suffix for r in refs] == ['.svg', '.svg']
  (root / 'svg').rename(root / 'svg_off')
  items, _, _ = _read('chairv2', root)
  assert all(r.strokes is not None and r.path is None for r in items['1001'].sketches)
  assert len(items['1001'].sketches[0].strokes) == 3


def test_qmul_pickle_only_variant_with_photo_folder(tmp_path):
  root = fixtures.qmul_tree(tmp_path, pickle_variant=True)
  for folder in ('trainA', 'testA'):
    for p in (root / folder).iterdir():
      p.unlink()
  (root / 'photo').mkdir()
  (root / 'testB' / '2001.png').rename(root / 'photo' / '2001.png')
  items, _, _ = _read('shoev2', root)
  assert items['2001'].split == 'test'  # from the pickle key 'testA/2001_1'
  assert len(items['2001'].sketches) == 1


def test_qmul_wrong_pickle_structure(tmp_path):
  root = fixtures.qmul_tree(tmp_path)
  with (root / 'ShoeV2_Coordinate').open('wb') as f:
    pickle.dump([1, 2, 3], f)
  with pytest.raises(common.PrepareError, match=r'ShoeV2_Coordinate: expected a pickled dict'):
    _read('shoev2', root)
  with (root / 'ShoeV2_Coordinate').open('wb') as f:
    pickle.dump({'trainA/1002_1': np.zeros((5, 2)), 'trainA/1002_2': np.zeros((3, 3))}, f)
  items, _, report = _read('shoev2', root)
  assert [u['file'] for u in report.unreadable] == [f'{root / "ShoeV2_Coordinate"}:trainA/1002_1']
  assert '(N, 3)' in report.unreadable[0]['error']
  assert [s.name for s in items['1002'].sketches] == ['1002_1', '1002_2']  # PNG kept for _1


def test_qmul_release_layout_with_split_lists(tmp_path):
  root = fixtures.qmul_release_tree(tmp_path, 'ChairV2')
  items, cats, report = _read('chairv2', root)
  assert cats == ['chair']
  assert {p: i.split for p, i in items.items()} == {
      '1001': 'train', '1002': 'train', '1003': 'train', '2001': 'test'}
  # The SVG in ChairV2_sketch/ wins over its rasterised twin in ChairV2_sketch_png/.
  assert [(r.name, r.path.parent.name, r.path.suffix) for r in items['1001'].sketches] == [
      ('1001_1', 'ChairV2_sketch', '.svg'), ('1001_2', 'ChairV2_sketch', '.svg')]
  assert items['1003'].sketches == []
  assert report.sketches_without_photo == [str(root / 'ChairV2_sketch' / '9999_1.svg')]
  assert report.notes == []


def test_qmul_release_split_from_sketch_lists_then_hash(tmp_path):
  root = fixtures.qmul_release_tree(tmp_path, png=False)
  (root / 'photo_train.txt').unlink()
  (root / 'photo_test.txt').unlink()
  items, _, report = _read('shoev2', root)
  assert items['2001'].split == 'test' and items['1001'].split == 'train'
  # 1003 has no sketch and is in no list: hash split, noted.
  assert items['1003'].split == common.hash_split('1003')
  assert len(report.notes) == 1 and 'ShoeV2_photo/1003.png' in report.notes[0]


def test_qmul_photo_in_both_split_lists_is_an_error(tmp_path):
  root = fixtures.qmul_release_tree(tmp_path, png=False)
  with (root / 'photo_test.txt').open('a') as f:
    f.write('1001.png\n')
  with pytest.raises(common.PrepareError,
                     match=r"photo_test.txt: '1001' is also in photo_train.txt"):
    _read('shoev2', root)


def test_qmul_without_photos_is_an_error(tmp_path):
  with pytest.raises(common.PrepareError, match='expected <Dataset>_photo/, trainB/ and testB/'):
    _read('shoev2', tmp_path)


def test_sketchy(tmp_path):
  items, cats, report = _read('sketchy', fixtures.sketchy_tree(tmp_path))
  assert cats == ['airplane', 'cat']
  assert items['airplane/a2'].split == 'test' and items['cat/c1'].split == 'train'
  assert [(r.name, r.path.suffix) for r in items['airplane/a1'].sketches] == [
      ('airplane/a1-1', '.svg'), ('airplane/a1-2', '.png')]
  assert items['cat/c2'].sketches == []
  assert report.sketches_without_photo == [
      str(tmp_path / 'sketch' / 'tx_000000000000' / 'cat' / 'zz-1.png')]
  assert items['cat/c1'].caption_keys == ('c1',)


def test_sketchy_missing_split_list(tmp_path):
  root = fixtures.sketchy_tree(tmp_path)
  (root / 'testset.txt').unlink()
  with pytest.raises(common.PrepareError, match='no test-split list found.*--split_file'):
    _read('sketchy', root)


def test_fscoco(tmp_path):
  items, cats, report = _read('fscoco', fixtures.fscoco_tree(tmp_path))
  assert cats == ['scene']
  assert items['12'].split == 'test' and items['11'].split == 'train'
  assert items['11'].sketches[0].path.suffix == '.npy'   # vector preferred
  assert items['12'].sketches[0].path.suffix == '.jpg'
  assert items['21'].texts == ['two giraffes near a tree', 'a blue sky']
  assert items['22'].sketches == [] and items['22'].texts == []
  assert report.sketches_without_photo == [str(tmp_path / 'vector_sketches' / '2' / '99.npy')]


def test_manifest(tmp_path):
  items, cats, _ = _read('manifest', fixtures.manifest_tree(tmp_path))
  assert cats == ['chair', 'shoe']
  assert set(items) == {'photos/p0', 'photos/p1', 'two', 'photos/p3'}
  assert len(items['photos/p0'].sketches) == 2 and items['photos/p3'].sketches == []
  assert items['two'].texts == ['wooden'] and items['two'].split == 'validation'
  assert items['photos/p3'].split == common.hash_split('photos/p3')


@pytest.mark.parametrize('bad, msg', [
    ('{"image": "photos/p0.jpg",', r'manifest.jsonl:2: bad JSON'),
    ({'image': 'photos/nope.jpg'}, r"manifest.jsonl:2: image 'photos/nope.jpg' not found"),
    ({'image': 'photos/p1.jpg', 'sketches': ['sk/nope.svg']}, r"manifest.jsonl:2: sketch 'sk/nope"),
    ({'image': 'photos/p1.jpg', 'colour': 'red'},
     r"manifest.jsonl:2: unknown key\(s\) \['colour'\]"),
    ('[1, 2]', r'manifest.jsonl:2: expected a JSON object, got list'),
    ({'image': 'photos/p1.jpg', 'texts': [3]}, r'manifest.jsonl:2: "texts" must be a string or'),
    ({'image': 'photos/p1.jpg', 'split': 'val'}, r"manifest.jsonl:2: split 'val'; valid: train"),
    ({'sketches': []}, r'manifest.jsonl:2: "image" .* is required'),
    ({'image': 'photos/p0.jpg'}, r"manifest.jsonl:2: duplicate id 'photos/p0' \(first on line 1\)"),
])
def test_manifest_errors_name_the_line(tmp_path, bad, msg):
  path = fixtures.manifest_tree(tmp_path, lines=[{'image': 'photos/p0.jpg'}, bad])
  with pytest.raises(common.PrepareError, match=msg):
    _read('manifest', path)


def test_manifest_allow_missing_records_skips(tmp_path):
  path = fixtures.manifest_tree(tmp_path, lines=[
      {'image': 'photos/p0.jpg', 'sketches': ['sk/nope.png', 'sk/p0.svg']},
      {'image': 'photos/nope.jpg'}])
  items, _, report = _read('manifest', path, allow_missing=True)
  assert list(items) == ['photos/p0'] and len(items['photos/p0'].sketches) == 1
  assert [u['file'] for u in report.unreadable] == [
      str(tmp_path / 'sk' / 'nope.png'), str(tmp_path / 'photos' / 'nope.jpg')]
  assert 'manifest.jsonl:2' in report.unreadable[1]['error']


def test_captions_json_and_csv(tmp_path):
  j = tmp_path / 'c.json'
  j.write_text(json.dumps({'1001': 'red', '1002': ['blue', 'suede']}))
  assert common.load_captions(j) == {'1001': ['red'], '1002': ['blue', 'suede']}
  c = tmp_path / 'c.csv'
  c.write_text('photo_id,caption\n1001,red\n1001,"laced, leather"\n')
  assert common.load_captions(c) == {'1001': ['red', 'laced, leather']}
  c.write_text('name,words\n1001,red\n')
  with pytest.raises(common.PrepareError, match='must name an id column'):
    common.load_captions(c)


def _stbir_demo(tmp_path, **options):
  data = fixtures.stbir_demo_tree(tmp_path)
  return _read('stbir_demo', data, root=str(tmp_path), **options)


def test_stbir_demo_lines_pair_photo_sketches_text_and_map_val_to_validation(tmp_path):
  items, cats, _ = _stbir_demo(tmp_path)
  assert cats == ['chair', 'shoe']
  chairs = tmp_path / 'datasets' / 'datasets' / 'ChairV2'
  assert {p: (i.split, i.category) for p, i in items.items()} == {
      'chair:320': ('train', 'chair'), 'chair:321': ('train', 'chair'),
      'shoe:1001': ('train', 'shoe'), 'chair:322': ('validation', 'chair'),
      'chair:400': ('test', 'chair')}
  issue_line = items['chair:320']
  assert issue_line.image == chairs / 'trainB' / '320.png'
  assert [s.path for s in issue_line.sketches] == [chairs / 'trainA' / '320_1.png',
                                                   chairs / 'trainA' / '320_2.png']
  assert issue_line.texts == ['dark brown velvet cushion, black wood frame']
  assert items['chair:322'].texts == []  # "text": "" is no text


def test_stbir_demo_virtual_class_becomes_family_per_category(tmp_path):
  items, _, _ = _stbir_demo(tmp_path)
  # Sorted (category, virtual_class): ('chair', '21') -> 0, ('chair', '3') -> 1; null -> -1.
  assert {p: i.family for p, i in items.items()} == {
      'chair:320': 0, 'chair:321': 0, 'chair:400': 0, 'chair:322': 1, 'shoe:1001': -1}


def test_stbir_demo_negatives_are_ignored_with_one_note(tmp_path):
  _, _, report = _stbir_demo(tmp_path)  # the issue's line lists negatives that do not exist
  assert report.notes == [(
      'stbir_demo: negative_sketches/negative_images/negative_texts ignored (1 of 5 lines list '
      'some); negatives come from the batch, and from the same virtual_class with '
      'data.family_group > 1 (2 virtual classes -> family ids)')]
  assert report.unreadable == []


def test_stbir_demo_one_file_and_root_default_to_the_current_directory(tmp_path, monkeypatch):
  data = fixtures.stbir_demo_tree(tmp_path)
  monkeypatch.chdir(tmp_path)
  items, _, _ = _read('stbir_demo', data / 'val.jsonl')
  assert list(items) == ['chair:322'] and items['chair:322'].split == 'validation'


def _demo_line(**changes):
  line = json.loads(fixtures.STBIR_DEMO_LINE)
  line.update({'id': 'chair:999', **changes})
  return line


@pytest.mark.parametrize('bad, msg', [
    (_demo_line(colour='red'), r"val.jsonl:2: unknown key\(s\) \['colour'\]; STBIR_demo keys"),
    (_demo_line(split='dev'), r"val.jsonl:2: split 'dev'; valid: train, val, test"),
    (_demo_line(text=['a', 'b']), r'val.jsonl:2: "text" must be a string'),
    (_demo_line(positive_sketches='a.png'), r'val.jsonl:2: "positive_sketches" must be a list'),
    (_demo_line(virtual_class=[1]), r'val.jsonl:2: "virtual_class" must be a string or null'),
    (_demo_line(id='chair:320'),
     r"val.jsonl:2: duplicate id 'chair:320' \(first at .*train.jsonl:1\)"),
    (_demo_line(image='../outside.png'),
     r"val.jsonl:2: image '../outside.png' resolves to .*outside --root"),
    (_demo_line(positive_sketches=['/etc/passwd']),
     r"val.jsonl:2: sketch '/etc/passwd' resolves to /etc/passwd, outside --root"),
    (_demo_line(image='datasets/nope.png'), r"val.jsonl:2: image 'datasets/nope.png' not found"),
    ({'id': 'x', 'split': 'train', 'category': 'chair'}, r'val.jsonl:2: "image" .* is required'),
    ('{"id": ', r'val.jsonl:2: bad JSON'),
])
def test_stbir_demo_errors_name_the_file_and_line(tmp_path, bad, msg):
  data = fixtures.stbir_demo_tree(tmp_path)
  with (data / 'val.jsonl').open('a') as f:
    f.write((bad if isinstance(bad, str) else json.dumps(bad)) + '\n')
  with pytest.raises(common.PrepareError, match=msg):
    _read('stbir_demo', data, root=str(tmp_path))


def test_stbir_demo_allow_missing_skips_and_reports(tmp_path):
  data = fixtures.stbir_demo_tree(tmp_path)
  (tmp_path / 'datasets/datasets/ChairV2/trainA/320_2.png').unlink()
  (tmp_path / 'datasets/datasets/ChairV2/testB/400.png').unlink()
  items, _, report = _read('stbir_demo', data, root=str(tmp_path), allow_missing=True)
  assert 'chair:400' not in items and len(items['chair:320'].sketches) == 1
  assert [u['file'].rpartition('/')[2] for u in report.unreadable] == ['400.png', '320_2.png']
  assert 'test.jsonl:1: image not found; line skipped' in report.unreadable[0]['error']


def test_manifest_format_points_stbir_demo_lines_to_their_format(tmp_path):
  path = fixtures.manifest_tree(tmp_path, lines=[fixtures.STBIR_DEMO_LINE])
  with pytest.raises(common.PrepareError, match='STBIR_demo line: use --format=stbir_demo'):
    _read('manifest', path)
