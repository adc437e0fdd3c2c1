"""The benchmark's ceiling: Bayes-optimal Acc@1 from the generator's ground truth."""

import math

import numpy as np
import pytest

from stbir_jax.data import ceiling, synth

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
