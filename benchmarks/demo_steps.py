"""What a step of each demo-size config costs against the demo's: the real train step of each
configs/base.py variant (its last stage, every loss and module, one batch of its own pipeline),
timed interleaved in one process so that the ratios hold on a machine whose speed drifts.

  python benchmarks/repeat.py --runs 3 --keys ratio,steps_per_s -- benchmarks/demo_steps.py
  python benchmarks/demo_steps.py --variants demo,demo_recipe --reps 7
  python benchmarks/demo_steps.py --variants demo,demo_recipe,demo_recipe:train.pair_shift=0.06

A variant is a configs/base.py demo variant, optionally followed by `:key=value,...` overrides
(values parsed as Python literals), so that an option's cost is timed beside the config without it.

ratio = the variant's step time / the first variant's: the factor on the demo's training time.
"""

import argparse
import ast

import common
from step_variants import timed_step


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--variants', default=','.join(common.DEMO_VARIANTS))
  p.add_argument('--reps', type=int, default=7)
  args = p.parse_args()
  variants = _split_variants(args.variants)
  unknown = sorted({v.partition(':')[0] for v in variants} - set(common.DEMO_VARIANTS))
  if unknown:
    raise SystemExit(f'--variants: unknown {unknown}; known: {", ".join(common.DEMO_VARIANTS)}')
  fns = {v: timed_step(_config(v), v.partition(':')[0]) for v in variants}
  load = common.wait_for_quiet()
  timings = common.interleaved(fns, reps=args.reps)
  first = timings[variants[0]]['median_s']
  rows = [dict(variant=v, step_ms=1e3 * t['median_s'], steps_per_s=1 / t['median_s'],
               ratio=t['median_s'] / first, quiet=f'{t["n_quiet"]}/{len(t["samples"])}')
          for v, t in timings.items()]
  print(f'Train step of each config (median of {args.reps} interleaved reps; ratio: step time '
        f'over {variants[0]}\'s)')
  print(common.table(rows, list(rows[0])))
  print('wrote', common.write_json('demo_steps', dict(
      variants=variants, timings=timings, load=load, table=rows,
      **{f'{r["variant"]}_ratio': r['ratio'] for r in rows})))


def _split_variants(arg: str) -> list:
  """'a,b:x=1,y=2,c' -> ['a', 'b:x=1,y=2', 'c']: a comma starts a new variant unless what follows
  it is another `key=value` of the one before."""
  variants = []
  for part in arg.split(','):
    if variants and ':' in variants[-1] and '=' in part:
      variants[-1] += ',' + part
    else:
      variants.append(part)
  return variants


def _config(variant: str):
  """The config of `name[:key=value,...]`: the named demo variant with its overrides."""
  name, _, overrides = variant.partition(':')
  config = common.demo_config(name)
  for item in filter(None, overrides.split(',')):
    key, sep, value = item.partition('=')
    if not sep:
      raise SystemExit(f'--variants: {item!r} in {variant!r} is not key=value')
    *path, leaf = key.split('.')
    section = config
    for field in path:
      section = section[field]
    if leaf not in section:
      raise SystemExit(f'--variants: {variant!r}: the config has no field {key!r}')
    section[leaf] = ast.literal_eval(value)
  return config


if __name__ == '__main__':
  main()
