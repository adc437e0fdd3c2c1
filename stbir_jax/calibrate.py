r"""Chooses a split-fusion run's query-time sketch weight on the validation split.

  python -m stbir_jax.calibrate --workdir=workdirs/demo_split [--step=N]

A split fusion ('concat', models/fusion.py) scores a sketch+text query as the sum of a sketch
score and a text score, weighted by the modality scales training learned. Those scales are a
compromise between the fused loss and the single-modality ones, and on the demo's benchmark
they under-weight the text: re-weighted at query time as w <q_s, g_s> + (1 - w) <q_t, g_t>, with
w chosen on validation as the late-fusion baseline chooses its own (compare.py), the same
checkpoints gain 4 - 5 points of sketch+text Acc@1 (docs/results.md, "A query-time sketch
weight"). Nothing is trained: w is config.model.fusion.sketch_weight (0.5 = the model as
trained), applied inside the model, so export, search and the demo serve the calibrated query.

The command embeds the validation queries and photos once, scores every w in
compare.FUSION_WEIGHTS (0, 0.05, ..., 1) by mean sketch+text Acc@1 (then mAP) over the datasets,
records the chosen w as a config change of the run (config_history/, as a resume's accepted
changes are), writes WORKDIR/calibration.json (the validation curve) and evaluates the
checkpoint with it on each evaluator's split: WORKDIR/results_<split>_step<N>.{json,md}.
Single-modality queries are unchanged: one half of their embedding is zero.
"""

import copy
import json

from absl import logging

from stbir_jax import compare, eval_report, evaluate, run_config
from stbir_jax.models import fusion as fusion_lib

FILE = 'calibration.json'
KEY = 'model.fusion.sketch_weight'


class CalibrationError(ValueError):
  pass


def _halves(embedded: dict) -> tuple[dict, dict]:
  """compare.embeddings output of a split model -> (sketch-half side, text-half side), each in
  the layout compare.choose_fusion_weight takes."""
  sketch, text = {}, {}
  for ds, ((gallery, instances, categories), queries) in embedded.items():
    h = gallery.shape[1] // 2
    for side, cut in ((sketch, slice(None, h)), (text, slice(h, None))):
      side[ds] = ((gallery[:, cut], instances, categories),
                  {key: (q[:, cut], target) for key, (q, target) in queries.items()})
  return sketch, text


def choose_sketch_weight(config, params, split: str = 'validation') -> tuple[float, dict]:
  """-> (the w of compare.FUSION_WEIGHTS with the best sketch+text Acc@1 (then mAP) on `split`,
  {w: (acc@1, mAP)}), for the params of a split-fusion model of `config`."""
  if config.model.fusion.kind not in fusion_lib.SPLIT_KINDS:
    raise CalibrationError(
        f'config.model.fusion.kind={config.model.fusion.kind!r}: only a split fusion '
        f'({", ".join(fusion_lib.SPLIT_KINDS)}) has a sketch score and a text score to weigh.')
  c = copy.deepcopy(config)
  c.model.fusion.sketch_weight = 0.5   # the halves as trained; w is applied to them here
  sketch, text = _halves(compare.embeddings(c, params, split, 'sketch+text', 'retrieval', ()))
  return compare.choose_fusion_weight(sketch, text, c)


def calibrate_run(workdir, step=None) -> dict:
  """Chooses w for the run's checkpoint `step` (default: the latest), records it in the run and
  evaluates the checkpoint with it. -> the calibration record written to WORKDIR/calibration.json,
  with the evaluation results under 'results'."""
  run, config = run_config.load_run(workdir)
  step, params = run_config.latest_params(run, step)
  weight, scores = choose_sketch_weight(config, params)
  before = float(config.model.fusion.sketch_weight)   # load_run fills it in for older runs
  logging.info('calibrate: sketch weight %.2f (validation sketch+text Acc@1 %.4f; %.4f at 0.5)',
               weight, scores[weight][0], scores[0.5][0])
  if weight != before:
    config.model.fusion.sketch_weight = weight
    run_config.record_change(config, run, step, {KEY: (before, weight)})
  record = {'step': step, 'sketch_weight': weight, 'before': before,
            'validation_by_weight': {str(w): {'acc@1': a, 'mAP': m}
                                     for w, (a, m) in scores.items()}}
  (run / FILE).write_text(json.dumps(record, indent=2))
  _, results = evaluate.evaluate_run(run, step=step)
  return dict(record, results=results)


def summary(record: dict) -> str:
  """'sketch weight 0.25 (validation sketch+text Acc@1 83.33 %, 78.65 % at 0.5)' for people."""
  curve = record['validation_by_weight']
  return (f'sketch weight {record["sketch_weight"]:.2f} (validation sketch+text Acc@1 '
          f'{100 * curve[str(record["sketch_weight"])]["acc@1"]:.2f} %, '
          f'{100 * curve["0.5"]["acc@1"]:.2f} % at 0.5)')


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  record = calibrate_run(f.workdir, f.step)
  print(f'{f.workdir}, step {record["step"]}: {summary(record)}\n'
        f'{eval_report.results_table(record["results"])}', flush=True)


if __name__ == '__main__':
  from stbir_jax import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()   # before JAX starts its CPU threads
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'Training run directory of a split-fusion model.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default: the latest.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
