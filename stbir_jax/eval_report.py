"""The evaluators' results as a reader sees them: `results_table(results)` is the markdown
tables (per dataset configuration: modes x Acc@1/5/10, mAP and mean rank; then the robustness
table, buckets x modes) and `write_results` writes them with the raw values (NAME.json, NAME.md)
to a run directory. The keys are the evaluators' (stbir_jax/evaluate.py): '<config>/<mode>/<metric>'
and '<config>/<bucket>/<mode>/<metric>'.
"""

import json

import numpy as np

from stbir_jax import paths

TABLE_METRICS = (('acc@1', 'Acc@1'), ('acc@5', 'Acc@5'), ('acc@10', 'Acc@10'), ('mAP', 'mAP'),
                 ('mean_rank', 'mean rank'))



def _split_keys(results: dict):
  """-> retrieval {config: {mode: {metric: v}}}, robustness {config: {bucket: {mode: {..}}}}."""
  retrieval, robustness = {}, {}
  for key, value in results.items():
    parts = key.split('/')
    if len(parts) == 3:
      c, mode, metric = parts
      retrieval.setdefault(c, {}).setdefault(mode, {})[metric] = value
    elif len(parts) == 4:
      c, bucket, mode, metric = parts
      robustness.setdefault(c, {}).setdefault(bucket, {}).setdefault(mode, {})[metric] = value
  return retrieval, robustness


def _fmt(metric: str, value) -> str:
  if value is None:
    return '-'
  if metric in ('mean_rank', 'median_rank'):
    return f'{value:.1f}'
  return f'{100.0 * value:.2f}'


def results_table(results: dict) -> str:
  """Markdown tables: per configuration, modes x (Acc@1/5/10, mAP in %, mean rank); then the
  robustness table, buckets x (mode Acc@1 / mAP in %)."""
  retrieval, robustness = _split_keys(results)
  lines = []
  for c, modes in retrieval.items():
    lines += [f'### {c}: retrieval (%, mean rank in positions)', '',
              '| mode | ' + ' | '.join(h for _, h in TABLE_METRICS) + ' |',
              '|---|' + '---:|' * len(TABLE_METRICS)]
    for mode, m in modes.items():
      lines.append(f'| {mode} | ' + ' | '.join(_fmt(k, m.get(k)) for k, _ in TABLE_METRICS)
                   + ' |')
    lines.append('')
  for c, buckets in robustness.items():
    modes = list(dict.fromkeys(mode for b in buckets.values() for mode in b))
    lines += [f'### {c}: robustness (Acc@1 / mAP, %)', '',
              '| bucket | ' + ' | '.join(modes) + ' |', '|---|' + '---:|' * len(modes)]
    for bucket, per_mode in buckets.items():
      cells = [f'{_fmt("acc@1", per_mode.get(m, {}).get("acc@1"))} / '
               f'{_fmt("mAP", per_mode.get(m, {}).get("mAP"))}' for m in modes]
      lines.append(f'| {bucket} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  return '\n'.join(lines)


def write_results(results: dict, workdir, name: str = 'results') -> None:
  """Writes workdir/NAME.json (raw values) and workdir/NAME.md (results_table); `workdir` may be
  a gs:// URL."""
  path = paths.resolve(workdir)
  path.mkdir(parents=True, exist_ok=True)
  plain = {k: (int(v) if isinstance(v, (int, np.integer)) else float(v))
           for k, v in results.items()}
  (path / f'{name}.json').write_text(json.dumps(plain, indent=2, sort_keys=True) + '\n')
  (path / f'{name}.md').write_text(results_table(results) + '\n')
