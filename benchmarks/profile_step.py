"""Where our train step's time goes: a jax.profiler trace of a few steps at a train_step.py size,
its XLA op events summed per op and grouped by what each op computes.

  python benchmarks/profile_step.py [--sizes small,vits16] [--steps 5] [--top 15]
  python benchmarks/profile_step.py --sizes demo,demo_split --steps 4   # the demo's ResNet step

Each op's time is the wall time of its thunk events on the XLA CPU runtime's threads (a matmul's
own worker threads are inside its event), divided by the number of traced steps; the share is of
their sum, which can exceed the step time when independent ops run side by side. An op's group
comes from the Python frames XLA keeps in the compiled HLO's metadata (the first frame that names
optax, a flax layer, our losses or the finiteness guard) and, for the rest, from its opcode.
"""

import argparse
import collections
import glob
import re
import tempfile
import time

import jax

import common

# (group, what a frame's file:function must contain), first match wins, innermost frame first.
FRAME_GROUPS = (
    ('optimizer update', ('optax/',)),
    ('finiteness guard', ('isfinite', 'is_finite', 'all_finite')),
    ('loss', ('stbir_jax/losses.py',)),
    ('layer / group norm', ('normalization.py', 'resnet.py:group_norm')),
    ('attention softmax', ('softmax',)),
    ('attention (scores, weighted sum)', ('attention.py', 'dot_product_attention')),
    ('dense / matmul', ('linear.py',)),
    ('activation (GELU)', ('gelu',)),
    ('embedding lookup', ('Embed', 'embed')),
    ('degradations / input', ('stbir_jax/degradations.py', 'stbir_jax/models/inputs')),
)


def parse_hlo(text: str) -> dict:
  """HLO instruction name -> (opcode, [file:function of each frame, innermost first],
  op_name) for every instruction of the compiled module's text."""
  files = dict(re.findall(r'^(\d+) "([^"]*)"$', text.split('FunctionNames')[0], re.M))
  funcs_txt = text.split('FunctionNames')[1].split('FileLocations')[0] if 'FunctionNames' in text \
      else ''
  funcs = dict(re.findall(r'^(\d+) "([^"]*)"$', funcs_txt, re.M))
  locs = {m[0]: (m[1], m[2]) for m in re.findall(
      r'^(\d+) \{file_name_id=(\d+) function_name_id=(\d+)', text, re.M)}
  frames = {m[0]: (m[1], m[2]) for m in re.findall(
      r'^(\d+) \{file_location_id=(\d+) parent_frame_id=(\d+)\}', text, re.M)}

  def chain(frame_id):
    out, seen = [], set()
    while frame_id in frames and frame_id not in seen:
      seen.add(frame_id)
      loc, parent = frames[frame_id]
      f, fn = locs.get(loc, ('', ''))
      out.append(f'{files.get(f, "")}:{funcs.get(fn, "")}')
      frame_id = parent
    return out

  ops = {}
  for m in re.finditer(r'^\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w\-]+)\((.*)$', text, re.M):
    name, opcode, rest = m.groups()
    frame = re.search(r'stack_frame_id=(\d+)', rest)
    op_name = re.search(r'op_name="([^"]*)"', rest)
    kind = re.search(r'"kind":"([^"]*)"', rest)
    ops[name] = (kind.group(1) if opcode == 'fusion' and kind else opcode,
                 chain(frame.group(1)) if frame else [], op_name.group(1) if op_name else '')
  return ops


def group_of(opcode: str, frames: list, op_name: str) -> str:
  if op_name.endswith('is_finite'):
    return 'finiteness guard'
  if 'conv' in opcode or 'conv_general' in op_name.rsplit('/', 1)[-1]:
    return 'convolution'        # flax's Conv lives in linear.py, beside Dense
  for frame in frames:
    for group, keys in FRAME_GROUPS:
      if any(k in frame for k in keys):
        return group
  if 'dot' in opcode or 'ynn' in opcode or 'dot_general' in op_name:
    return 'dense / matmul'
  if 'conv' in opcode or 'conv_general' in op_name:
    return 'convolution'
  if opcode in ('copy', 'transpose', 'copy-start', 'copy-done', 'bitcast'):
    return 'copies / layout'
  return f'other ({opcode})'


def op_times(xplane_path: str) -> dict:
  """HLO op name -> total ns of its events in the trace."""
  data = jax.profiler.ProfileData.from_file(xplane_path)
  total = collections.Counter()
  for plane in data.planes:
    if plane.name != '/host:CPU':
      continue
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        if 'hlo_op' in stats:
          total[stats['hlo_op']] += event.duration_ns
  return total


def profile(size: str, steps: int, top: int) -> dict:
  if size in common.DEMO_VARIANTS:
    jitted, state, dev_batch, batch = common.demo_step(size)
  else:
    batch = common.SIZES[size]['batch']
    config = common.our_config(size, batch)
    dev_batch = jax.device_put(common.host_batch(size, batch))
    jitted, state, _ = common.our_step(config)
  step = jitted.lower(state, dev_batch).compile()   # its HLO names the ops; no second compile
  ops = parse_hlo(step.as_text())
  for _ in range(2):  # warm up
    state, metrics = step(state, dev_batch)
    jax.block_until_ready(metrics['loss'])
  common.wait_for_quiet()
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        state, metrics = step(state, dev_batch)
        jax.block_until_ready(metrics['loss'])
    traced_s = (time.perf_counter() - start) / steps
    times = op_times(glob.glob(f'{trace_dir}/**/*.xplane.pb', recursive=True)[0])
  per_op = {name: ns / steps / 1e9 for name, ns in times.items()}
  summed = sum(per_op.values())
  groups = collections.Counter()
  for name, seconds in per_op.items():
    groups[group_of(*ops.get(name, ('?', [], '')))] += seconds
  top_ops = [dict(op=name, group=group_of(*ops.get(name, ('?', [], ''))),
                  ms=1e3 * s, share=s / summed,
                  where=(ops.get(name, ('', [], ''))[2] or '')[-70:])
             for name, s in sorted(per_op.items(), key=lambda x: -x[1])[:top]]
  group_rows = [dict(group=g, ms=1e3 * s, share=s / summed) for g, s in groups.most_common()]
  return dict(size=size, batch=batch, steps=steps, step_s_while_tracing=traced_s,
              op_seconds_per_step=summed, groups=group_rows, top_ops=top_ops,
              n_ops=len(per_op))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--sizes', default='small,vits16')
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--top', type=int, default=15)
  args = p.parse_args()
  results = []
  for size in args.sizes.split(','):
    r = profile(size, args.steps, args.top)
    results.append(r)
    print(f'\n[{size}] batch {r["batch"]}: {1e3 * r["step_s_while_tracing"]:.0f} ms a step while '
          f'traced; op events sum to {1e3 * r["op_seconds_per_step"]:.0f} ms over '
          f'{r["n_ops"]} ops')
    print(common.table(r['groups'], ['group', 'ms', 'share']))
    print(common.table(r['top_ops'], ['op', 'group', 'ms', 'share', 'where']))
  print('wrote', common.write_json('profile_' + '_'.join(r['size'] for r in results),
                                   dict(results=results)))


if __name__ == '__main__':
  main()
