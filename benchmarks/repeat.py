"""Runs one benchmark script in N separate processes, one after another, and reports the median
and spread of its figures across them: a single process's figure can be one lucky or unlucky
compile, page-cache state or neighbour.

  python benchmarks/repeat.py --runs 3 -- benchmarks/train_step.py --sizes small --reps 3

Each run's JSON (the path the script prints as `wrote <path>`) is kept as
benchmarks/results/<name>.run<i>.json; the summary goes to benchmarks/results/<name>.repeat.json.
Figures are the numeric leaves whose key contains one of --keys; a run none of whose timing
samples was quiet (common.interleaved: other processes used more than
QUIET_FOREIGN_CORES) is reported and left out of the summary.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position

DEFAULT_KEYS = ('examples_per_s', 'images_per_s', 'queries_per_s', 'ratio', 'mfu')


def leaves(tree, prefix=''):
  """{'a/0/b': number} for every int/float leaf of a JSON tree (lists indexed by position, or by
  their items' `size`/`gallery` when they have one, so runs line up by configuration)."""
  if isinstance(tree, dict):
    items = tree.items()
  elif isinstance(tree, list):
    items = ((str(x.get('size', x.get('gallery', i))) if isinstance(x, dict) else str(i), x)
             for i, x in enumerate(tree))
  else:
    return {prefix: tree} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else {}
  out = {}
  for k, v in items:
    out.update(leaves(v, f'{prefix}/{k}' if prefix else str(k)))
  return out


def all_loaded(tree) -> bool:
  """True when some interleaved() result in the tree had no quiet sample."""
  if isinstance(tree, dict):
    return bool(tree.get('all_loaded')) or any(all_loaded(v) for v in tree.values())
  if isinstance(tree, list):
    return any(all_loaded(v) for v in tree)
  return False


def summarise(runs: list, keys) -> list:
  """Rows of figure, median, min, max and spread ((max - min) / median) over `runs` (JSON trees),
  for the numeric leaves present in every run whose key contains one of `keys`."""
  flat = [leaves(r) for r in runs]
  common_keys = [k for k in flat[0] if all(k in f for f in flat[1:])]
  rows = []
  for k in common_keys:
    if not any(key in k.rsplit('/', 1)[-1] for key in keys):
      continue
    values = [f[k] for f in flat]
    median = statistics.median(values)
    rows.append(dict(figure=k, median=median, min=min(values), max=max(values),
                     spread=(max(values) - min(values)) / median if median else float('nan'),
                     runs=len(values)))
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
  p.add_argument('--runs', type=int, default=3)
  p.add_argument('--keys', default=','.join(DEFAULT_KEYS),
                 help='report numeric figures whose key contains one of these')
  p.add_argument('script', nargs=argparse.REMAINDER, help='-- script.py [its arguments]')
  args = p.parse_args()
  script = [a for a in args.script if a != '--']
  if not script or not script[0].endswith('.py'):
    p.error('give the benchmark script after --, e.g. -- benchmarks/topk.py --sizes 100000')
  if args.runs < 1:
    p.error(f'--runs must be >= 1, got {args.runs}')
  runs, paths, loaded = [], [], []
  for i in range(args.runs):
    print(f'== run {i + 1}/{args.runs}: {" ".join(script)}', flush=True)
    proc = subprocess.run([sys.executable, *script], stdout=subprocess.PIPE, text=True,
                          check=False)
    sys.stdout.write(proc.stdout)
    wrote = [line.split(' ', 1)[1].strip() for line in proc.stdout.splitlines()
             if line.startswith('wrote ')]
    if proc.returncode != 0 or not wrote:
      sys.exit(f'run {i + 1} of {script[0]} failed (exit {proc.returncode}) or printed no '
               '"wrote <path>" line; nothing summarised')
    kept = wrote[-1].removesuffix('.json') + f'.run{i}.json'
    shutil.copyfile(wrote[-1], kept)
    with open(kept) as f:
      tree = json.load(f)
    paths.append(kept)
    if all_loaded(tree):
      loaded.append(kept)
      print(f'run {i + 1}: no quiet sample in some timing; left out of the summary', flush=True)
    else:
      runs.append(tree)
  if not runs:
    sys.exit('every run was taken on a loaded machine; nothing summarised')
  rows = summarise(runs, args.keys.split(','))
  print(f'\n{len(runs)} quiet runs of {" ".join(script)} (median, min, max across processes)')
  print(common.table(rows, ['figure', 'median', 'min', 'max', 'spread', 'runs']))
  name = os.path.basename(wrote[-1]).removesuffix('.json') + '.repeat'
  print('wrote', common.write_json(name, dict(script=script, runs=paths, loaded_runs=loaded,
                                              summary=rows)))


if __name__ == '__main__':
  main()
