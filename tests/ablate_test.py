"""Ablation variants switch off exactly one STBIR module; the report is a table per variant."""

import json
import os
import subprocess
import sys

import pytest

from configs import base
from stbir_jax import ablate, eval_sections, stages
from stbir_jax.data import ceiling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_each_variant_switches_off_one_module():
  config = base.get_config('demo')
  full = ablate.variant_config(config, 'full', 3)
  assert full.train.seed == 3 and list(full.evals) == ['retrieval', 'robustness']
  assert full.stages == config.stages and full.curriculum.kind == config.curriculum.kind

  assert ablate.variant_config(config, 'curriculum_none', 0).curriculum.kind == 'none'
  assert ablate.variant_config(config, 'curriculum_uniform', 0).curriculum.kind == 'uniform'

  no_cat = ablate.variant_config(config, 'no_category', 0)
  assert not no_cat.category.enabled
  assert all('prototype' not in s.losses and 'prototypes' not in s.train for s in no_cat.stages)
  stages.build_stages(no_cat)  # still a valid schedule

  joint = ablate.variant_config(config, 'joint', 0)
  (stage,) = stages.build_stages(joint)
  every_loss = {loss for s in config.stages for loss in s.losses}
  assert set(stage.losses) == every_loss and stage.query == 'sketch+text'
  assert (stage.start, stage.end) == (0, config.train.num_steps)
  assert {'sketch', 'photo', 'text', 'fusion', 'temperature'} <= set(stage.train)
  # The base config is never modified.
  assert config.curriculum.kind == base.get_config('demo').curriculum.kind
  with pytest.raises(ValueError, match='valid: full, curriculum_none'):
    ablate.variant_config(config, 'no_such', 0)


def test_report_has_a_row_per_variant_mode_and_bucket():
  config = base.get_config('demo')
  config.evals.robustness.buckets = ['clean', 'severe', 'no_text']
  result = {}
  for m in config.evals.retrieval.modes:
    result.update({f'shoes/{m}/acc@1': 0.5, f'shoes/{m}/acc@5': 0.625,
                   f'shoes/{m}/acc@10': 0.75, f'shoes/{m}/mAP': 0.6})
    result.update({f'shoes/{b}/{m}/acc@1': 0.25 for b in ('clean', 'severe', 'no_text')})
  runs = {'full': [result, dict(result, **{'shoes/sketch/acc@1': 0.7})], 'joint': [result]}
  text = ablate.report(runs, config, [0, 1], 'CMD')
  # Sample std of (0.5, 0.7) = 0.141.
  assert ('| full | 2 | sketch | 0.600 ± 0.141 | 0.625 ± 0.000 | 0.750 ± 0.000 | 0.600 ± 0.000 |'
          in text)
  assert '| joint | 1 | sketch+text | 0.500 | 0.625 | 0.750 | 0.600 |' in text
  assert text.count('| full | 2 | severe |') == 1 and '`CMD`' in text
  # Text-only queries of the no_text bucket would be empty: not reported.
  assert '| full | 2 | no_text | 0.250 ± 0.000 | — | 0.250 ± 0.000 |' in text


def test_report_replaces_only_its_own_section_of_a_page(tmp_path):
  page = tmp_path / 'results.md'
  page.write_text('# Results\n\nhand-written intro\n')
  ablate.write_report('TABLES v1', str(page))
  first = page.read_text()
  assert first.startswith('# Results\n\nhand-written intro\n') and 'TABLES v1' in first
  page.write_text(first + '\nhand-written outro\n')
  ablate.write_report('TABLES v2', str(page))
  second = page.read_text()
  assert 'TABLES v1' not in second and second.count('TABLES v2') == 1
  assert 'hand-written intro' in second and second.endswith('hand-written outro\n')
  new = tmp_path / 'new' / 'ablations.md'
  ablate.write_report('T', str(new))
  assert new.read_text().startswith('# STBIR ablations') and 'T' in new.read_text()


def test_staged_variant_restores_the_paper_schedule_for_the_joint_demo():
  config = base.get_config('demo')
  assert ablate.default_variants(config) == ['full', 'curriculum_none', 'curriculum_uniform',
                                             'no_category', 'staged']
  staged = ablate.variant_config(config, 'staged', 0)
  assert [s.name for s in stages.build_stages(staged)] == ['sketch_photo', 'photo_refine',
                                                           'text_integration']
  assert ablate.default_variants(base.get_config())[-1] == 'joint'
  modal = stages.build_stages(ablate.variant_config(config, 'staged_modalities', 0))
  # 3,000 steps: both modalities against the photo for the first half, then the fused query.
  assert [(s.name, s.start, s.end, s.losses) for s in modal] == [
      ('modality_photo', 0, 1500, ('single_modality',)),
      ('text_integration', 1500, 3000,
       ('contrastive', 'triplet', 'prototype', 'single_modality'))]
  assert 'text' in modal[0].train and 'photo' in modal[0].train
  no_category = ablate.variant_config(base.get_config('demo'), 'no_category', 0)
  no_category = ablate.variant_config(no_category, 'staged_modalities', 0)
  assert all('prototypes' not in s.train and 'prototype' not in s.losses
             for s in stages.build_stages(no_category))


def test_report_only_writes_the_finished_runs_and_trains_nothing(tmp_path):
  config = base.get_config('smoke')
  result = {}
  for m in config.evals.retrieval.modes:
    result.update({f'shoes/{m}/{k}': 0.5 for k, _ in ablate.OVERALL_METRICS})
    result.update({f'shoes/{b}/{m}/acc@1': 0.25
                   for b in eval_sections.config_section(config, 'robustness').buckets})
  (tmp_path / 'full' / 'seed_1').mkdir(parents=True)
  (tmp_path / 'full' / 'seed_1' / 'results.json').write_text(json.dumps(result))
  out = tmp_path / 'report.md'
  subprocess.run([sys.executable, '-m', 'stbir_jax.ablate', '--config=configs/base.py:smoke',
                  f'--workdir={tmp_path}', '--seeds=0,1', '--report_only', f'--out={out}'],
                 cwd=REPO, check=True, capture_output=True,
                 env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO))
  text = out.read_text()
  assert '| full | 1 | sketch+text | 0.500 | 0.500 | 0.500 | 0.500 |' in text
  assert '| curriculum_none |' not in text  # no finished run: left out, not trained
  # Trained nothing; the benchmark's ceiling is computed once and cached next to the runs.
  assert sorted(p.name for p in tmp_path.iterdir()) == ['ceiling.json', 'full', 'report.md']
  cached = json.loads((tmp_path / 'ceiling.json').read_text())
  assert 'Acc@1 of ceiling' in text and cached['shoes']['sketch+text'] == 1.0
  # Each degraded robustness bucket has its own ceiling: below the clean query's, never above.
  degraded = [f'shoes@{b.name}' for b in ceiling.degraded_buckets(config)]
  assert degraded and sorted(cached) == sorted(['shoes', ceiling.ARGUMENTS] + degraded)
  assert all(cached[key]['sketch+text'] <= 1.0 for key in degraded)
  assert "sketch+text of the bucket's ceiling" in text


def test_report_states_acc_as_a_fraction_of_ceiling_and_of_clean_and_judges_each_module():
  config = base.get_config('demo')
  config.evals.robustness.buckets = ['clean', 'moderate']
  result = {}
  for m in config.evals.retrieval.modes:
    result.update({f'shoes/{m}/{k}': 0.5 for k in ('acc@1', 'acc@5', 'acc@10', 'mAP')})
    result.update({f'shoes/clean/{m}/acc@1': 0.5, f'shoes/moderate/{m}/acc@1': 0.2})
  low = dict(result, **{'shoes/sketch+text/acc@1': 0.3})
  runs = {'full': [result, dict(result, **{'shoes/sketch+text/acc@1': 0.52})],
          'no_category': [low, dict(low, **{'shoes/sketch+text/acc@1': 0.32})]}
  # Keys sorted, as a cached ceiling.json gives them: the line still reads in the modes' order.
  ceilings = {'shoes': {'sketch': 0.8, 'sketch+text': 1.0, 'text': 0.2},
              'shoes@moderate': {'sketch': 0.6, 'sketch+text': 0.8, 'text': 0.15}}
  text = ablate.report(runs, config, [0, 1], 'CMD', ceilings=ceilings)
  assert 'best possible Acc@1 sketch 80.00 %, text 20.00 %, sketch+text 100.00 %.' in text
  z = '0.500 ± 0.000'
  assert f'| full | 2 | sketch | {z} | {z} | {z} | {z} | 62.5 % |' in text
  assert '| full | 2 | sketch+text | 0.510 ± 0.014 |' in text
  # moderate 0.2 of clean 0.5 = 40 %, and of its own ceiling 0.8, 25 %; clean 0.5 of 1.0.
  z = '0.200 ± 0.000'
  assert f'| full | 2 | moderate | {z} | {z} | {z} | 40.0 % | 25.0 % |' in text
  assert '| full | 2 | clean | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.000 | 100.0 % | 50.0 % |' \
      in text
  # full minus no_category on sketch+text: 0.51 - 0.31 = +0.2 > 2 x 0.014: a gain.
  assert '| no_category | `shoes/sketch+text/acc@1` | +0.200 | 0.028 | gain |' in text
  assert '| no_category | `shoes/sketch/acc@1` | +0.000 | 0.000 | not significant |' in text
