r"""Compile for a TPU slice without one: per-chip memory, FLOPs, roofline and collectives.

  pip install -e '.[tpu]'          # libtpu: the TPU compiler, usable on a CPU-only host
  python -m stbir_jax.aot --config=configs/base.py:v5e_8 --topology=v5e:2x4 --out=aot.json
  python -m stbir_jax.aot --config=configs/base.py --topology=v5e:2x4,v5p:2x2x1 \
      --config.train.batch_size=256 --config.model.dtype=bfloat16

`jax.experimental.topologies` describes the devices of a named slice (v5e:2x4 = v5e-8,
v5p:2x2x1 = v5p-8, v6e:2x4, v4:2x2x1, up to 256 chips such as v5e:16x16); the run's own mesh
(config.mesh), state shardings (train_step.abstract_state) and jitted steps
(train_step.jit_step) are built over them and compiled: the train step of every stage, the
gallery encoder and the query encoder of the evaluators. Shapes only: no data, weights or
tokenizer are read.

For each program it prints and writes (--out, JSON) the per-chip HBM (arguments, temporaries,
outputs, total vs the chip's capacity and the headroom), FLOPs and bytes accessed per chip, the
roofline lower bound of the step time max(FLOPs / peak, bytes / HBM bandwidth) with the MFU that
bound implies, the collectives of the compiled HLO (count and bytes by kind) and the compile
time. Exit status 2 when a program does not fit a chip, with what to change.

v4: the compile-only topology exposes each v4 chip as its two TensorCores (no megacore), so a
"chip" row of v4 is one core with half of the chip's HBM and peak.
"""

import dataclasses
import json
import math
import os
import re
import sys
import time

# Compile-only: no TPU is opened, so several compiling processes (and a training run on the same
# VM) may load libtpu at once; everything not compiled for the topology runs on the CPU.
os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from stbir_jax import (
  config_checks,
  config_overrides,  # noqa: F401  (list-valued --config.* flags)
  degradations,
  eval_sections,
  evaluate,
  hlo_census,
  sharding,
  stages,
  train_step,
)
from stbir_jax.models import stbir

GIB = 2**30
# A step that fits with less headroom than this is flagged: the runtime reserves some HBM, and
# fragmentation and a profiler need some too.
TARGET_HEADROOM = 0.15


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  peak_flops: float       # dense bf16 FLOP/s
  hbm_bytes: float
  hbm_bandwidth: float    # bytes/s
  source: str


# Google Cloud TPU documentation, system architecture pages (figures per chip).
CHIPS = {
    'TPU v4': Chip('v4', 275e12, 32 * GIB, 1200e9,
                   'https://cloud.google.com/tpu/docs/v4: 275 TFLOPs (bf16), 32 GiB HBM2, '
                   '1200 GBps'),
    'TPU v5 lite': Chip('v5e', 197e12, 16 * GIB, 819e9,
                        'https://cloud.google.com/tpu/docs/v5e: 197 TFLOPs (bf16), 16 GB HBM2, '
                        '819 GBps'),
    'TPU v5': Chip('v5p', 459e12, 95 * GIB, 2765e9,
                   'https://cloud.google.com/tpu/docs/v5p: 459 TFLOPs (bf16), 95 GB HBM2e, '
                   '2765 GBps'),
    'TPU v6 lite': Chip('v6e', 918e12, 32 * GIB, 1638e9,
                        'https://cloud.google.com/tpu/docs/v6e: 918 TFLOPs (bf16), 32 GB HBM, '
                        '1638 GBps'),
}

class AotError(RuntimeError):
  pass


# ------------------------------------------------------------------------------------ devices


def topology_devices(name: str) -> list:
  """The devices of a named TPU slice ('v5e:2x4'), described by libtpu; no TPU needed."""
  try:
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    return list(topologies.get_topology_desc(platform='tpu', topology_name=name).devices)
  except RuntimeError as e:
    if 'TPU support not installed' in str(e):
      raise AotError("libtpu is not installed: pip install -e '.[tpu]'") from e
    raise AotError(f'--topology={name!r}: {e}') from e


def chip_of(devices) -> Chip:
  kind = devices[0].device_kind
  if kind not in CHIPS:
    raise AotError(f'No peak figures for device kind {kind!r}; known: {", ".join(CHIPS)}.')
  chip = CHIPS[kind]
  cores = len({d.core_on_chip for d in devices})
  if cores > 1:  # one device per core: each has its share of the chip
    chip = dataclasses.replace(chip, name=f'{chip.name} core', peak_flops=chip.peak_flops / cores,
                               hbm_bytes=chip.hbm_bytes / cores,
                               hbm_bandwidth=chip.hbm_bandwidth / cores)
  return chip


# ------------------------------------------------------------------------------------ programs


def shape_constants(config, num_categories: int) -> train_step.Constants:
  """train_step.Constants with the shapes the step closes over and placeholder ids: the real ones
  need a tokenizer (a hub download for CLIP's), and ids do not change memory or FLOPs."""
  length = config.data.max_text_len
  return train_step.Constants(
      prompt_ids=jnp.ones((num_categories, length), jnp.int32),
      prompt_mask=jnp.ones((num_categories, length), jnp.int32),
      attribute_ids=jnp.arange(1, len(degradations.ATTRIBUTE_WORDS) + 1, dtype=jnp.int32),
      buckets=degradations.buckets_from_config(config.curriculum.buckets))


def num_categories(config) -> int:
  """Categories of config.data.configs: from the generator for STBIR-Synth (no data needed),
  else from the prepared dataset; 1 when it is not prepared here (prototypes are (C, D): their
  memory is negligible)."""
  from stbir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  try:
    return len(pipeline.category_names(config.data))
  except pipeline.DataError:
    return 1


def _abstract(tree, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree,
                      shardings)


def _wanted(name: str, programs) -> bool:
  return not programs or any(name == p or name.startswith(p.rstrip('/') + '/') for p in programs)


def lowered_programs(config, devices, programs=()):
  """Yields (name, lowered) for every stage's train step ('train/<stage>') and the two
  evaluation encoders ('eval/encode_gallery', 'eval/encode_query'), built with the training
  program's own functions over `devices`; only those named (or prefixed) by `programs` when given.
  """
  mesh = sharding.make_mesh(config.mesh, devices)
  processes = len({d.process_index for d in devices})
  config_checks.validate_config(config, processes, sharding.data_parallel_size(mesh))
  model = stbir.STBIR.from_config(config)
  constants = shape_constants(config, num_categories(config))
  state, state_shardings = train_step.abstract_state(config, model, constants, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  total_steps = int(config.train.num_steps)
  batch = jax.eval_shape(lambda: stbir.dummy_batch(config, config.train.batch_size))
  batch = _abstract(batch, jax.tree.map(lambda _: batch_sharding, batch))
  for stage in stages.build_stages(config):
    if not _wanted(f'train/{stage.name}', programs):
      continue
    step = train_step.jit_step(config, model, stage, constants, total_steps, mesh, state_shardings)
    yield f'train/{stage.name}', step.lower(state, batch)

  evaluator = evaluate.make_evaluator('retrieval', config, model, data_fns={}, mesh=mesh)
  variables = stbir.model_variables(state.params)
  eval_batch = jax.eval_shape(lambda: stbir.dummy_batch(config, evaluator.batch_size))
  eval_batch = _abstract(eval_batch, jax.tree.map(lambda _: batch_sharding, eval_batch))
  # pylint: disable=protected-access
  if _wanted('eval/encode_gallery', programs):
    yield 'eval/encode_gallery', evaluator._encode_gallery.lower(variables, eval_batch['image'])
  if _wanted('eval/encode_query', programs):
    yield 'eval/encode_query', evaluator._encode_query.lower(
        variables, {k: eval_batch[k] for k in evaluate.QUERY_KEYS})


def abstract_state(config, devices):
  """The run's train state as shapes with their shardings over `devices` (nothing allocated)."""
  mesh = sharding.make_mesh(config.mesh, devices)
  model = stbir.STBIR.from_config(config)
  state, _ = train_step.abstract_state(config, model,
                                       shape_constants(config, num_categories(config)), mesh)
  return state


def state_bytes_per_chip(state) -> dict:
  """Bytes of params and of optimiser state one chip holds, from their shardings."""

  def per_chip(tree):
    return int(sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
                   for x in jax.tree.leaves(tree)))
  return {'params': per_chip(state.params), 'opt_state': per_chip(state.opt_state)}


# ------------------------------------------------------------------------------------ analysis


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0]
  return cost or {}


# The TPU compiler's refusals: "... required for HLO temporaries (16.23G) exceeds available HBM
# (15.75G)" (temporaries alone) or "Used 19.01G of 15.48G hbm" (everything).
_OOM_RES = (
    re.compile(r'required for HLO temporaries \(([\d.]+)([KMGT]?)\) exceeds available HBM '
               r'\(([\d.]+)([KMGT]?)\)'),
    re.compile(r'Used ([\d.]+)([KMGT]?) of ([\d.]+)([KMGT]?) hbm'))
_UNITS = {'': 1, 'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}


def _out_of_memory(name: str, error: Exception, chip: Chip, compile_s: float) -> dict:
  """The row of a program the TPU compiler refused for HBM: what it says it needed (a lower
  bound of the total where it names the temporaries only)."""
  m = next((m for m in (r.search(str(error)) for r in _OOM_RES) if m), None)
  if not m:
    raise AotError(f'{name}: the TPU compiler ran out of memory: {error}') from error
  used = float(m[1]) * _UNITS[m[2]]
  zero = {'count': 0, 'bytes': 0}
  return {
      'program': name, 'compile_s': round(compile_s, 1),
      'error': str(error).split('\n', 1)[0][:400],
      'available': float(m[3]) * _UNITS[m[4]],  # what the compiler says a chip offers
      'hbm': {'arguments': 0, 'temporaries': used, 'outputs': 0, 'code': 0, 'total': used,
              'capacity': chip.hbm_bytes, 'headroom': 1.0 - used / chip.hbm_bytes},
      'flops': 0.0, 'bytes_accessed': 0.0,
      'roofline': {'compute_s': 0.0, 'memory_s': 0.0, 'step_s': 0.0, 'bound': 'none', 'mfu': 0.0,
                   'examples_per_s': 0.0},
      'collectives': {kind: dict(zero) for kind in hlo_census.COLLECTIVES}}


def analyse(name: str, lowered, chip: Chip, examples: int, hlo_dir: str = '',
            count_whole_batch: bool = True) -> dict:
  """Compiles `lowered` and reads its per-chip memory, cost, collectives and (with
  `count_whole_batch`) the arrays that hold the whole batch of `examples` on a chip
  (hlo_census.batch_arrays); with `hlo_dir`, writes the compiled HLO text there as
  <program>.hlo.txt."""
  start = time.time()
  try:
    compiled = lowered.compile()
  except Exception as e:  # pylint: disable=broad-except  (XlaRuntimeError)
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    return _out_of_memory(name, e, chip, time.time() - start)
  compile_s = time.time() - start
  mem = compiled.memory_analysis()
  cost = _cost(compiled)
  args, temps = mem.argument_size_in_bytes, mem.temp_size_in_bytes
  outputs = mem.output_size_in_bytes - mem.alias_size_in_bytes  # donated: outputs reuse args
  total = args + temps + outputs + mem.generated_code_size_in_bytes
  flops, bytes_accessed = float(cost.get('flops', 0.0)), float(cost.get('bytes accessed', 0.0))
  compute_s, memory_s = flops / chip.peak_flops, bytes_accessed / chip.hbm_bandwidth
  bound_s = max(compute_s, memory_s)
  hlo = compiled.as_text()
  if hlo_dir:
    os.makedirs(hlo_dir, exist_ok=True)
    with open(os.path.join(hlo_dir, name.replace('/', '_') + '.hlo.txt'), 'w') as f:
      f.write(hlo)
  return {
      'program': name, 'compile_s': round(compile_s, 1),
      'hbm': {'arguments': args, 'temporaries': temps, 'outputs': outputs,
              'code': mem.generated_code_size_in_bytes, 'total': total,
              'capacity': chip.hbm_bytes, 'headroom': 1.0 - total / chip.hbm_bytes},
      'flops': flops, 'bytes_accessed': bytes_accessed,
      'roofline': {'compute_s': compute_s, 'memory_s': memory_s, 'step_s': bound_s,
                   'bound': 'compute' if compute_s >= memory_s else 'memory',
                   'mfu': compute_s / bound_s if bound_s else 0.0,
                   'examples_per_s': examples / bound_s if bound_s else 0.0},
      'collectives': hlo_census.collectives(hlo),
      'global_batch_arrays': (hlo_census.batch_arrays(hlo, examples) if count_whole_batch else
                              {'batch': examples, 'skipped': 'a parameter has a dimension of '
                               f'{examples}; compile with another batch to check'})}


def _print(line: str) -> None:
  print(line, flush=True)


def compile_for(config, topology: str, programs=(), log=_print, hlo_dir: str = '') -> dict:
  """The report of one topology: every program compiled for it (HLO text to `hlo_dir`/<topology>
  if given)."""
  devices = topology_devices(topology)
  chip = chip_of(devices)
  abstract = abstract_state(config, devices)
  # A parameter dimension of the batch's size would be counted as the batch.
  param_dims = {d for x in jax.tree.leaves(abstract.params) for d in x.shape}
  report = {'topology': topology, 'devices': len(devices), 'chip': dataclasses.asdict(chip),
            'processes': len({d.process_index for d in devices}),
            'mesh': dict(zip(sharding.AXES, sharding.mesh_shape(config.mesh, len(devices)),
                             strict=True)),
            'batch_size': int(config.train.batch_size), 'dtype': config.model.dtype,
            'remat': str(config.model.remat),
            'state_per_chip': state_bytes_per_chip(abstract), 'programs': []}
  state = report['state_per_chip']
  log(f'{topology}: {len(devices)} devices of {report["chip"]["name"]} on {report["processes"]} '
      f'host(s), mesh {report["mesh"]}, batch {report["batch_size"]}, {report["dtype"]}, remat '
      f'{report["remat"]}; state per chip: params {_gib(state["params"])} GiB, optimiser '
      f'{_gib(state["opt_state"])} GiB')
  for name, lowered in lowered_programs(config, devices, programs):
    examples = config.train.batch_size if name.startswith('train/') else _eval_batch(config)
    row = analyse(name, lowered, chip, examples,
                  os.path.join(hlo_dir, topology.replace(':', '_')) if hlo_dir else '',
                  count_whole_batch=examples not in param_dims)
    report['programs'].append(row)
    log(format_row(topology, row))
    whole = row.get('global_batch_arrays', {})
    if len(devices) > 1 and (whole.get('count') or whole.get('skipped')):
      log(format_global_batch(row['program'], whole))
  return report


# ------------------------------------------------------------------------------------ output


def _eval_batch(config) -> int:
  """The batch size of the eval programs: the retrieval evaluator's."""
  return eval_sections.config_section(config, 'retrieval').batch_size


def _gib(x) -> str:
  return f'{x / GIB:.2f}'


HEADER = (f'{"topology":<11} {"program":<26} {"args":>6} {"temp":>6} {"out":>5} {"total":>6} '
          f'{"HBM":>5} {"free":>5} {"TFLOP":>7} {"GB acc":>7} {"step ms":>8} {"bound":>7} '
          f'{"ex/s":>8} {"compile":>7}  collectives (count/MiB)')


def format_row(topology: str, row: dict) -> str:
  h, r = row['hbm'], row['roofline']
  coll = ', '.join(f'{k} {v["count"]}/{v["bytes"] / 2**20:.0f}'
                   for k, v in row['collectives'].items() if v['count'])
  flag = '' if h['headroom'] >= TARGET_HEADROOM else (' TIGHT' if h['headroom'] >= 0 else ' OOM')
  return (f'{topology:<11} {row["program"]:<26} {_gib(h["arguments"]):>6} '
          f'{_gib(h["temporaries"]):>6} {_gib(h["outputs"]):>5} {_gib(h["total"]):>6} '
          f'{_gib(h["capacity"]):>5} {h["headroom"]:>5.0%} {row["flops"] / 1e12:>7.2f} '
          f'{row["bytes_accessed"] / 1e9:>7.1f} {r["step_s"] * 1e3:>8.1f} {r["bound"]:>7} '
          f'{r["examples_per_s"]:>8.0f} {row["compile_s"]:>6.0f}s  {coll or "none"}{flag}')


def format_global_batch(program: str, whole: dict) -> str:
  """A line naming the arrays with a dimension of the whole batch in a chip's program (they are
  computed on every chip), or why they were not counted."""
  if 'skipped' in whole:
    return (f'  {program}: arrays of the whole batch ({whole["batch"]}) not counted: '
            f'{whole["skipped"]}')
  shapes = ', '.join(f'{a["shape"]} {a["op"]} x{a["count"]}' for a in whole['largest'][:4])
  return (f'  {program}: {whole["count"]} arrays have a dimension of the whole batch '
          f'({whole["batch"]}), {_gib(whole["bytes"])} GiB summed; largest: {shapes}')


def misfits(report: dict, config) -> list[str]:
  """A message per program that does not fit its chip, with how much and what to change."""
  out = []
  for row in report['programs']:
    h = row['hbm']
    if 'error' not in row and h['total'] <= h['capacity']:
      continue
    limit = row.get('available', h['capacity'])  # a refused compile says what it could use
    over = h['total'] - limit
    fixed = h['arguments'] + h['outputs'] + h['code']  # 0 where the compiler refused it
    # Temporaries are mostly activations, proportional to the per-chip batch.
    usable = (1.0 - TARGET_HEADROOM) * h['capacity'] - fixed
    batch = config.train.batch_size if row['program'].startswith('train/') else \
        _eval_batch(config)
    dp = report['mesh']['data'] * report['mesh']['fsdp']
    fit = int(batch * usable / h['temporaries']) // dp * dp if usable > 0 else 0
    key = ('train.batch_size' if row['program'].startswith('train/')
           else 'evals.retrieval.batch_size')
    hints = [f'--config.{key}={fit} (temporaries scale with it; estimate)' if fit else
             f'the arguments alone ({_gib(fixed)} GiB) leave no room: shard the state with '
             '--config.mesh.fsdp=-1 --config.mesh.data=1']
    if report['remat'] != 'full':
      hints.append("--config.model.remat=dots_saveable or 'full' (recompute activations)")
    hints.append('--config.train.grad_accum_steps=2 or more (activations of a micro-batch)')
    if report['mesh']['fsdp'] == 1:
      state = report['state_per_chip']
      hints.append(f'--config.mesh.fsdp=-1 --config.mesh.data=1 (params + optimiser state are '
                   f'{_gib(state["params"] + state["opt_state"])} GiB per chip, replicated)')
    needs = 'needs at least' if 'error' in row else 'needs'
    out.append(f'{report["topology"]} {row["program"]}: {needs} {_gib(h["total"])} GiB per '
               f'chip, {_gib(over)} GiB ({over / limit:.0%}) more than the {_gib(limit)} GiB '
               f'of a {report["chip"]["name"]} chip. Try: ' + '; '.join(hints) + '.')
  return out


# ------------------------------------------------------------------------------------ program

FLAGS = flags.FLAGS


def _define_flags():
  config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/base.py:v5e_8.',
                                  lock_config=True)
  flags.DEFINE_list('topology', ['v5e:2x4'], 'TPU slices to compile for, e.g. v5e:2x4,v5p:2x2x1.')
  flags.DEFINE_list('programs', [], 'Compile only these programs (names or prefixes: '
                    'train/text_integration, train, eval); default: all.')
  flags.DEFINE_string('out', '', 'Write the reports as JSON here.')
  flags.DEFINE_string('hlo_dir', '', 'Write each compiled program\'s HLO text under '
                      'HLO_DIR/<topology>/<program>.hlo.txt.')
  flags.mark_flags_as_required(['config'])


def run(config, topologies, out: str = '', programs=(), log=_print, hlo_dir: str = ''):
  """Compiles for every topology; -> (reports, misfit messages). Writes JSON to `out`."""
  log(HEADER)
  reports, problems = [], []
  for topology in topologies:
    report = compile_for(config, topology, programs, log=log, hlo_dir=hlo_dir)
    reports.append(report)
    problems += misfits(report, config)
  if out:
    with open(out, 'w') as f:
      json.dump({'command': ' '.join(sys.argv), 'reports': reports}, f, indent=1)
  return reports, problems


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    _, problems = run(FLAGS.config, FLAGS.topology, FLAGS.out, FLAGS.programs,
                      hlo_dir=FLAGS.hlo_dir)
  except (AotError, ValueError) as e:  # ValueError: config and mesh checks (train, sharding)
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  for problem in problems:
    print(f'DOES NOT FIT: {problem}', file=sys.stderr)
  if problems:
    sys.exit(2)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
