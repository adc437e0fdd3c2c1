"""Robustness by averaging weights (WiSE-FT, Wortsman et al. 2022): the parameters of a run trained
on clean queries and of the same run fine-tuned on degraded ones, mixed as (1 - a) * clean +
a * robust, each mix calibrated on validation and scored on clean and degraded queries. A probe
of two trained runs that share an ancestor checkpoint, not part of the package (docs/results.md,
"Averaging a clean and a fine-tuned model's weights").

  python probes/weight_interpolation.py --clean=workdirs/budget2712/stbir/seed_0 \
      --robust=workdirs/wise_s0 [--alphas=0,0.25,0.5,0.75,1] [--split=validation]

Both runs must have the same model config (the robust run's is used). Each mix gets its own
query-time sketch weight, chosen on the validation split as calibrate.py chooses it; then the
robustness evaluator (its buckets, clean among them, with their own draws) scores it on --split.
Prints sketch+text Acc@1 % per bucket and mix; writes them as JSON next to the robust run
(weight_interpolation_<split>.json). `python -m stbir_jax.soup` writes one mix as a run of its own.
"""

import probe_common

from stbir_jax import calibrate, evaluate, run_config, soup
from stbir_jax.eval_sections import EvalData, add_section
from stbir_jax.models.stbir import STBIR


def main():
  args, alphas = probe_common.clean_and_robust_args(__doc__)
  _, clean = run_config.latest_params(args.clean)
  run, config = run_config.load_run(args.robust)
  _, robust = run_config.latest_params(run)
  add_section(config, 'robustness')
  config.evals.robustness.update(split=args.split, modes=['sketch+text'])
  data = EvalData(config)
  table = {}
  for alpha in alphas:
    params = soup.average([clean, robust], [1.0 - alpha, alpha])
    weight, _ = calibrate.choose_sketch_weight(config, params, 'validation')
    config.model.fusion.sketch_weight = weight
    section = evaluate.section(config, 'robustness')
    ev = evaluate.RobustnessEvaluator(section, STBIR.from_config(config), data)
    results = ev.run({'params': params})
    row = {str(b): 100.0 * float(results[f'{section.datasets[0]}/{b}/sketch+text/acc@1'])
           for b in config.evals.robustness.buckets}
    table[f'a={alpha:g} (w {weight:.2f})'] = row
    print(f'a={alpha:g}, w {weight:.2f}: {row}', flush=True)
  probe_common.report(table, list(next(iter(table.values()))),
                      probe_common.output_path(str(run), 'weight_interpolation', args.split))


if __name__ == '__main__':
  main()
