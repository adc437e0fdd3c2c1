"""Stage schedule: boundaries from fractions, validation messages."""

import pytest

from configs import base
from stbir_jax import stages


def test_paper_schedule_boundaries_cover_the_run():
  config = base.get_config('demo')
  config.stages = stages.alignment_stages()
  got = [(s.name, s.start, s.end) for s in stages.build_stages(config)]
  # 3000 steps split 0.4 / 0.2 / 0.4.
  assert got == [('sketch_photo', 0, 1200), ('photo_refine', 1200, 1800),
                 ('text_integration', 1800, 3000)]
  assert base.get_config().stages == stages.alignment_stages()


def test_demo_trains_one_joint_stage():
  (stage,) = stages.build_stages(base.get_config('demo'))
  assert (stage.name, stage.start, stage.end, stage.query) == ('joint', 0, 3000, 'sketch+text')
  assert set(stage.train) == set(stages.PARAM_GROUPS)
  assert set(stage.losses) == set(stages.LOSSES)


def test_last_stage_takes_the_remainder():
  config = base.get_config('smoke')  # 6 steps: round(2.4)=2, round(1.2)=1, remainder 3
  got = [(s.start, s.end) for s in stages.build_stages(config)]
  assert got == [(0, 2), (2, 3), (3, 6)]
  assert stages.stage_at(stages.build_stages(config), 2).name == 'photo_refine'
  assert stages.stage_at(stages.build_stages(config), 99).name == 'text_integration'


@pytest.mark.parametrize('field,value,message', [
    ('train', ['sketch', 'decoder'], "'decoder', which is not a parameter group"),
    ('losses', ['contrastive', 'focal'], "'focal'; valid losses"),
    ('query', 'photo', "'photo'; valid"),
    ('train', [], 'must train something'),
])
def test_bad_stage_fields_are_named(field, value, message):
  config = base.get_config('smoke')
  config.stages[1][field] = value
  with pytest.raises(stages.StageError, match=r"config\.stages\[1\] \('photo_refine'\)") as e:
    stages.build_stages(config)
  assert message in str(e.value)


def test_fractions_must_sum_to_one():
  config = base.get_config('smoke')
  config.stages[0].fraction = 0.5
  with pytest.raises(stages.StageError, match='sum to 1'):
    stages.build_stages(config)


def test_prototype_loss_needs_category_module():
  config = base.get_config('smoke')
  config.category.enabled = False
  with pytest.raises(stages.StageError, match="'prototypes', which is not a parameter group"):
    stages.build_stages(config)
  for stage in config.stages:
    stage.train = [g for g in stage.train if g != 'prototypes']
  with pytest.raises(stages.StageError, match='category.enabled is False'):
    stages.build_stages(config)
