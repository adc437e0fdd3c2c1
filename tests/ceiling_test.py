"""The benchmark's ceiling: Bayes-optimal Acc@1 from the generator's ground truth."""

import json
import math

import numpy as np
import pytest

from stbir_jax.data import ceiling, ceiling_strokes, synth

SHOE = synth.categories.CATEGORIES['shoes'][0]
APPEARANCE = dict(main_colour='red', secondary_colour='grey', accent_colour='blue',
                  pattern='plain', pattern_colour='white', material='leather',
                  secondary_material='rubber')


def _photo(instance, structure_key, angle_deg=0.0, scale=10.0, appearance=None):
  a = scale * np.array([[math.cos(math.radians(angle_deg)), -math.sin(math.radians(angle_deg))],
                        [math.sin(math.radians(angle_deg)), math.cos(math.radians(angle_deg))]])
  return ceiling.Photo(instance=instance, structure_key=structure_key, category=SHOE,
                       appearance=dict(appearance or APPEARANCE), pose=(a, np.full(2, 32.0)),
                       drawer_poses=[], text_choices=[], texts=[])


def test_bayes_acc_at_1_breaks_ties_uniformly():
  likelihoods = np.array([[1.0, 1.0, 0.0],    # tie of 2 holding the target: 1/2
                          [0.0, 2.0, 1.0],    # target alone at the top: 1
                          [0.0, 0.0, 0.0],    # contradicts every photo: a tie of 3: 1/3
                          [3.0, 0.0, 1.0]])   # target not at the top: 0
  got = ceiling.bayes_acc_at_1(likelihoods, np.array([0, 1, 2, 2]))
  assert got == pytest.approx((0.5 + 1.0 + 1.0 / 3.0 + 0.0) / 4.0)


def test_a_sketch_rules_out_photos_whose_pose_its_drawer_could_not_have_given():
  drawn = _photo(0, (7, 1))
  twin_rotated = _photo(1, (7, 1), angle_deg=6.0)     # same structure, turned 6 degrees
  twin_larger = _photo(2, (7, 1), scale=10.5)         # same structure, 5 % larger
  other_structure = _photo(3, (7, 2))
  gallery = [drawn, twin_rotated, twin_larger, other_structure]
  # Drawer turned +3 deg: the 6-deg twin needs -3 deg (possible), the larger one a drawer scale
  # of 1/1.05 = 0.952 (possible, and 1/10.5 likely against 1/10).
  pose = dict(rotation=math.radians(3.0), scale=1.0, shift=np.zeros(2))
  likelihood = ceiling.sketch_likelihoods(drawn, pose, gallery, 64)
  np.testing.assert_allclose(likelihood, [1 / 10.0, 1 / 10.0, 1 / 10.5, 0.0])
  # Drawer turned -3 deg: the 6-deg twin would need -9 deg, outside the drawer's +-4.
  pose = dict(rotation=math.radians(-3.0), scale=0.96, shift=np.zeros(2))
  likelihood = ceiling.sketch_likelihoods(drawn, pose, gallery, 64)
  # ... and the larger twin a drawer scale of 0.96 / 1.05 = 0.914 < 0.95.
  np.testing.assert_allclose(likelihood, [1 / 10.0, 0.0, 0.0, 0.0])


def test_a_description_ties_photos_that_differ_only_in_what_it_leaves_out():
  other_secondary = _photo(1, (5, 0), appearance=dict(APPEARANCE, secondary_colour='navy'))
  striped = _photo(2, (5, 1), appearance=dict(APPEARANCE, pattern='striped'))
  true = _photo(0, (5, 2))
  gallery = [true, other_secondary, striped]
  choices = dict(noun=SHOE.nouns[0], adjective='', with_secondary=False, with_material=True,
                 with_pattern=False, form=0)
  words = synth.text_from_choices(choices, SHOE, true.appearance)
  p_noun = SHOE.nouns.count(SHOE.nouns[0]) / len(SHOE.nouns)
  # The secondary colour is not named: a tie. A striped shoe's description names its pattern
  # 3 times in 4, so an unnamed pattern is 1/4 as likely from it.
  np.testing.assert_allclose(ceiling.text_likelihoods(words, choices, gallery),
                             [p_noun, p_noun, 0.25 * p_noun])
  assert ceiling.bayes_acc_at_1(ceiling.text_likelihoods(words, choices, gallery)[None],
                                np.array([0])) == 0.5
  named = dict(choices, with_secondary=True)
  words = synth.text_from_choices(named, SHOE, true.appearance)
  np.testing.assert_allclose(ceiling.text_likelihoods(words, named, gallery),
                             [p_noun, 0.0, 0.25 * p_noun])


def test_generated_ground_truth_explains_its_own_queries_and_bounds_the_modes():
  spec = synth.SynthSpec(resolution=32, test_families=2, structural_variants=2,
                             appearance_variants=2, sketches_per_instance=2, texts_per_instance=2)
  gallery = ceiling.photos('shoes', 'test', spec)
  for photo in gallery:
    # The recorded choices re-create every description word for word.
    assert [synth.text_from_choices(c, photo.category, photo.appearance)
            for c in photo.text_choices] == photo.texts
  got = ceiling.ceiling('shoes', 'test', spec)
  # Sketch (structure) + text (main colour, distinct within a family): always the one photo.
  assert got['sketch+text'] == 1.0
  # No description names the structure: 2 structural twins always tie.
  assert got['text'] <= 0.5 + 1e-12


def test_a_jittered_sketch_weighs_a_turned_twin_by_the_overlap_of_the_two_rotations():
  drawn = _photo(0, (7, 1))
  twin_10 = _photo(1, (7, 1), angle_deg=10.0)
  twin_20 = _photo(2, (7, 1), angle_deg=20.0)
  other_structure = _photo(3, (7, 2))
  gallery = [drawn, twin_10, twin_20, other_structure]
  still = dict(rotation=0.0, scale=1.0, shift=np.zeros(2))
  prior = ceiling.jitter_prior(0.06, 64, samples=200_000)
  got = ceiling.jittered_sketch_likelihoods(drawn, still, still, gallery, prior)
  # The sketch shows angle 0 = drawer (+-4 deg) + jitter (+-0.06 pi = +-10.8 deg). The drawn
  # photo needs a jitter within +-4 (8 deg of the jitter's 21.6), the 10-deg twin one within
  # [-10.8, -6] (4.8 deg): 0.6 as likely. The 20-deg twin needs [-24, -16]: impossible. The
  # drawer's shift, turned by the jitter (<= 2.4 px), always fits the jitter's +-3.84 px, and
  # the scales are equal, so only the rotations differ.
  assert got[0] > 0
  np.testing.assert_allclose(got[1] / got[0], 0.6, rtol=0.03)
  assert got[2] == 0.0 and got[3] == 0.0
  # A vanishing jitter rules out what the drawer alone rules out (the 6-deg twin of the test
  # above under a -3-deg drawer) and keeps what it allows.
  turned = dict(rotation=math.radians(-3.0), scale=0.96, shift=np.zeros(2))
  twin_6 = _photo(1, (7, 1), angle_deg=6.0)
  tiny = ceiling.jitter_prior(1e-3, 64, samples=20_000)
  for pose in (turned, dict(turned, rotation=math.radians(3.0), scale=1.0)):
    clean = ceiling.sketch_likelihoods(drawn, pose, [drawn, twin_6], 64)
    jittered = ceiling.jittered_sketch_likelihoods(drawn, pose, still, [drawn, twin_6], tiny)
    np.testing.assert_array_equal(jittered > 0, clean > 0)


def test_a_jittered_or_pose_blind_sketch_cannot_beat_the_drawn_one():
  spec = synth.SynthSpec(resolution=32, test_families=2, structural_variants=2,
                         appearance_variants=2, sketches_per_instance=2, texts_per_instance=2)
  clean = ceiling.ceiling('shoes', 'test', spec)
  blind = ceiling.ceiling('shoes', 'test', spec, pose_blind=True)
  jittered = ceiling.ceiling('shoes', 'test', spec, jitter=0.1, samples=2048)
  # Without its pose a sketch names the structure, which 2 appearance twins share: 1/2.
  assert blind['sketch'] == 0.5
  # The text tells the twins apart (main colour), the sketch the structure.
  assert blind['sketch+text'] == jittered['sketch+text'] == 1.0
  assert 0.5 <= jittered['sketch'] <= clean['sketch']
  assert jittered['text'] == blind['text'] == clean['text']
  with pytest.raises(ValueError, match='jitter=-0.1'):
    ceiling.ceiling('shoes', 'test', spec, jitter=-0.1)


def test_a_degraded_description_is_scored_by_every_way_its_tokens_could_remain():
  # Keep 1, drop 2, keep 3 at p = 0.5; either of two 1s kept, the other dropped, at p = 0.25.
  assert ceiling.degraded_text_likelihood((1, 3), (1, 2, 3), 0.5) == 0.125
  assert ceiling.degraded_text_likelihood((1,), (1, 1), 0.25) == pytest.approx(2 * 0.75 * 0.25)
  assert ceiling.degraded_text_likelihood((3, 1), (1, 2, 3), 0.5) == 0.0   # out of order
  # A removed (attribute) token is always taken out: it can neither remain nor cost anything.
  assert ceiling.degraded_text_likelihood((1, 3), (1, 2, 3), 0.0, removed={2}) == 1.0
  assert ceiling.degraded_text_likelihood((1, 2, 3), (1, 2, 3), 0.0, removed={2}) == 0.0
  assert ceiling.degraded_text_likelihood((), (), 0.3) == 1.0


def test_vague_text_ties_photos_that_differ_in_colour_and_a_kept_colour_word_does_not():
  true = _photo(0, (5, 0))
  blue = _photo(1, (5, 1), appearance=dict(APPEARANCE, main_colour='blue'))
  gallery = [true, blue]
  choices = dict(noun=SHOE.nouns[0], adjective='', with_secondary=False, with_material=False,
                 with_pattern=False, form=0)
  text = synth.text_from_choices(choices, SHOE, true.appearance)
  p_noun = SHOE.nouns.count(SHOE.nouns[0]) / len(SHOE.nouns)
  vague = ceiling.TextDegradation(0.0, vague=True)
  observed = vague.degrade(text)
  assert vague.tokens('red')[0] not in observed and len(observed) == len(vague.tokens(text)) - 1
  np.testing.assert_allclose(ceiling.text_likelihoods(observed, choices, gallery, None, vague),
                             [p_noun, p_noun])
  # Word dropout alone: the tokens left keep 'red' (dropout hit the noun), which only the
  # true photo's description holds; the dropped token costs p, the rest 1 - p each.
  dropout = ceiling.TextDegradation(0.5, vague=False)
  tokens = dropout.tokens(text)
  noun_at = tokens.index(dropout.tokens(SHOE.nouns[0])[0])
  observed = tokens[:noun_at] + tokens[noun_at + 1:]
  got = ceiling.text_likelihoods(observed, choices, gallery, None, dropout)
  assert got[1] == 0.0 and got[0] >= p_noun * 0.5 ** len(tokens)
  # No dropout and no vagueness: the likelihoods of the clean description.
  none = ceiling.TextDegradation(0.0, vague=False)
  np.testing.assert_allclose(
      ceiling.text_likelihoods(none.degrade(text), choices, gallery, None, none),
      ceiling.text_likelihoods(text, choices, gallery))


def test_a_bucket_that_takes_words_away_cannot_beat_the_clean_query():
  spec = synth.SynthSpec(resolution=32, test_families=2, structural_variants=2,
                         appearance_variants=2, sketches_per_instance=2, texts_per_instance=2)
  clean = ceiling.ceiling('shoes', 'test', spec)
  unchanged = ceiling.ceiling('shoes', 'test', spec, word_dropout=0.0, vague_text=False)
  assert unchanged == clean
  vague = ceiling.ceiling('shoes', 'test', spec, vague_text=True)
  everything = ceiling.ceiling('shoes', 'test', spec, word_dropout=1.0)
  # Text without its colours or without any word keeps only what the granted choices tell
  # (whether a pattern was named) and the noun's category: below the clean description.
  assert everything['text'] <= vague['text'] < clean['text'] == 0.5
  assert vague['sketch'] == clean['sketch']
  # The sketch alone still names structure and pose, so sketch+text stays at its ceiling.
  assert vague['sketch+text'] == clean['sketch+text'] == 1.0
  # With the pose blurred too, the appearance twins only the text told apart tie.
  severe = ceiling.ceiling('shoes', 'test', spec, jitter=0.1, word_dropout=0.4, vague_text=True,
                           samples=2048)
  assert severe['sketch+text'] < 1.0
  with pytest.raises(ValueError, match='word_dropout=1.5'):
    ceiling.ceiling('shoes', 'test', spec, word_dropout=1.5)


def test_buckets_are_named_from_the_config_and_read_as_their_text_strokes_and_jitter():
  from configs import base
  config = base.get_config('demo_budget')
  moderate, severe = ceiling.named_buckets(config, ['moderate', 'severe'])
  label, key, kwargs = ceiling.bucket_row(severe, 512)
  assert key == '@severe' and 'vague text' in label and 'jitter 0.1' in label
  assert 'stroke dropout 0.4' in label and 'keep 0.5 of the strokes' in label
  assert kwargs == dict(jitter=pytest.approx(0.1), word_dropout=pytest.approx(0.4),
                        vague_text=True, stroke_dropout=pytest.approx(0.4),
                        keep_fraction=pytest.approx(0.5), samples=512,
                        stroke_samples=ceiling_strokes.SAMPLES)
  assert ceiling.bucket_row(moderate, 512)[2]['vague_text'] is False
  with pytest.raises(SystemExit, match="no bucket 'sever'.*expected some of clean, mild"):
    ceiling.named_buckets(config, ['sever'])
  no_text, = ceiling.named_buckets(config, ['no_text'])
  with pytest.raises(SystemExit, match="'no_text' drops a whole modality"):
    ceiling.bucket_row(no_text, 512)


def test_a_cached_bucket_ceiling_is_reused_only_for_the_same_arguments(tmp_path):
  from configs import base
  config = base.get_config('smoke')
  cache = tmp_path / 'ceiling.json'
  first = ceiling.for_config(config, 'test', cache)
  assert sorted(first) == ['shoes', 'shoes@moderate', 'shoes@severe']
  stored = json.loads(cache.read_text())
  # A figure stored for these arguments is read back, not recomputed...
  stored['shoes@moderate']['sketch'] = 0.123
  cache.write_text(json.dumps(stored))
  assert ceiling.for_config(config, 'test', cache)['shoes@moderate']['sketch'] == 0.123
  # ... but one stored for other arguments (the bucket redefined, or an older model of it) is.
  stored[ceiling.ARGUMENTS]['shoes@moderate']['keep_fraction'] = 1.0
  cache.write_text(json.dumps(stored))
  again = ceiling.for_config(config, 'test', cache)
  assert again['shoes@moderate'] == first['shoes@moderate'] and again['shoes'] == first['shoes']
  assert json.loads(cache.read_text())[ceiling.ARGUMENTS] == {
      'shoes': {}, **{f'shoes@{b.name}': ceiling.bucket_row(b, ceiling.SAMPLES)[2]
                      for b in ceiling.degraded_buckets(config)}}
