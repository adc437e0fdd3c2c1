"""The benchmark protocol: a sample taken beside another busy process is recognised as loaded,
the median keeps only quiet samples, and repeat.py summarises runs in separate processes."""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'benchmarks'))
import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import repeat  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_foreign_cpu_is_machine_busy_time_minus_own_over_wall_time():
  # 2 s of wall; the machine was busy 3.1 CPU-seconds, 1.1 of them this process's: 1.0 core.
  readings = iter([(10.0, 500.0, 7.0), (12.0, 503.1, 8.1)])
  with common.ForeignCpu(read=lambda: next(readings)) as meter:
    pass
  assert meter.cores == pytest.approx(1.0)
  # Clock-tick rounding can make own time exceed the machine's: never below zero.
  readings = iter([(0.0, 10.0, 1.0), (1.0, 10.0, 1.01)])
  with common.ForeignCpu(read=lambda: next(readings)) as meter:
    pass
  assert meter.cores == 0.0


def test_cpu_seconds_reads_this_machine_and_counts_own_work_as_busy():
  wall0, busy0, own0 = common.cpu_seconds()
  t = time.perf_counter()
  while time.perf_counter() - t < 0.5:
    pass
  wall, busy, own = common.cpu_seconds()
  assert wall - wall0 >= 0.5
  # Spinning used CPU in this process, and the machine's busy time includes it (clock ticks of
  # 10 ms, hence the slack).
  assert own - own0 >= 0.1
  assert busy - busy0 >= (own - own0) - 0.05


def test_the_median_is_over_quiet_samples_and_a_run_with_none_is_flagged(monkeypatch):
  durations = iter([0.05, 0.10, 0.15, 0.40])
  foreign = iter([0.0, 0.0, 0.0, 1.0])      # the last sample shared the machine

  class Meter:
    def __enter__(self):
      self.cores = next(foreign)
      return self

    def __exit__(self, *exc):
      return False

  monkeypatch.setattr(common, 'ForeignCpu', Meter)
  out = common.interleaved({'ours': lambda: time.sleep(next(durations))}, reps=4, warmup=0)['ours']
  # The median of the three quiet samples is the 0.10 s one, not the 0.125 of all four.
  assert out['median_s'] == pytest.approx(0.10, abs=0.02)
  assert out['min_s'] == pytest.approx(0.05, abs=0.02)
  assert (out['n_quiet'], out['all_loaded'], out['foreign_cores']) == (3, False, [0, 0, 0, 1.0])
  assert common.quiet_samples({'ours': out, 'peer': dict(out, n_quiet=1)}) == '1/4'


def test_repeat_lines_runs_up_by_configuration_and_reports_median_and_spread():
  run = lambda a, b, ratio: {'results': [{'size': 'small', 'ours_examples_per_s': a,
                                           'timings': {'ours': {'median_s': 1.0}}},
                                          {'size': 'vits16', 'ours_examples_per_s': b}],
                             'ratio_ours_over_peer': ratio, 'unrelated': 7}
  rows = {r['figure']: r for r in repeat.summarise(
      [run(10.0, 1.0, 1.5), run(12.0, 1.2, 1.0), run(14.0, 0.8, 2.0)], repeat.DEFAULT_KEYS)}
  assert set(rows) == {'results/small/ours_examples_per_s', 'results/vits16/ours_examples_per_s',
                       'ratio_ours_over_peer'}
  small = rows['results/small/ours_examples_per_s']
  assert (small['median'], small['min'], small['max']) == (12.0, 10.0, 14.0)
  assert small['spread'] == pytest.approx(4.0 / 12.0)
  assert rows['ratio_ours_over_peer']['median'] == 1.5
  assert repeat.all_loaded({'results': [{'timings': {'ours': {'all_loaded': True}}}]})
  assert not repeat.all_loaded(run(1.0, 1.0, 1.0))


def test_repeat_runs_the_script_in_separate_processes(tmp_path, monkeypatch):
  script = tmp_path / 'fake_bench.py'
  out = tmp_path / 'fake.json'
  # Each process reports its own pid, so three runs show three processes.
  script.write_text(
      'import json, os\n'
      f'json.dump({{"pid_examples_per_s": os.getpid()}}, open({str(out)!r}, "w"))\n'
      f'print("wrote", {str(out)!r})\n')
  monkeypatch.setattr(common, 'RESULTS', str(tmp_path / 'results'))
  monkeypatch.setattr(sys, 'argv', ['repeat.py', '--runs', '3', '--', str(script)])
  repeat.main()
  summary = json.loads((tmp_path / 'results' / 'fake.repeat.json').read_text())
  pids = [json.loads(Path(p).read_text())['pid_examples_per_s'] for p in summary['runs']]
  assert len(set(pids)) == 3
  (row,) = summary['summary']
  assert row['runs'] == 3 and row['min'] == min(pids)


HLO = '''HloModule jit_f

FileNames
1 "/site-packages/optax/_src/transform.py"
2 "/site-packages/flax/linen/normalization.py"
3 "/work/stbir_jax/models/layers.py"

FunctionNames
1 "update_fn"
2 "_compute_stats"
3 "quick_gelu"

FileLocations
1 {file_name_id=1 function_name_id=1 line=3 end_line=3 column=1 end_column=2}
2 {file_name_id=2 function_name_id=2 line=5 end_line=5 column=1 end_column=2}
3 {file_name_id=3 function_name_id=3 line=9 end_line=9 column=1 end_column=2}

StackFrames
1 {file_location_id=1 parent_frame_id=1}
2 {file_location_id=2 parent_frame_id=3}
3 {file_location_id=3 parent_frame_id=3}

ENTRY %main (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  %add_fusion.1 = f32[4]{0} fusion(%p), kind=kLoop, calls=%a, \
metadata={op_name="jit(f)/add" stack_frame_id=1}
  %copy_bitcast_fusion.2 = f32[4]{0} fusion(%add_fusion.1), kind=kLoop, calls=%b, \
metadata={op_name="jit(f)/ln/add_any" stack_frame_id=2}
  %mul.3 = f32[4]{0} multiply(%p, %p), metadata={op_name="jit(f)/mlp/mul" stack_frame_id=3}
  %and.4 = pred[4]{0} and(%p, %p), metadata={op_name="jit(f)/is_finite"}
  ROOT %ynn_fusion = f32[4]{0} fusion(%copy_bitcast_fusion.2), kind=kCustom, calls=%c, \
backend_config={"fusion_config":{"kind":"__ynn_fusion"}}
}
'''


def test_profile_groups_ops_by_their_innermost_known_frame_then_by_opcode():
  import profile_step  # pylint: disable=g-import-not-at-top
  ops = profile_step.parse_hlo(HLO)
  # Frame 2 is normalization.py called from layers.py: the innermost frame decides.
  assert ops['copy_bitcast_fusion.2'][1] == [
      '/site-packages/flax/linen/normalization.py:_compute_stats',
      '/work/stbir_jax/models/layers.py:quick_gelu']
  groups = {name: profile_step.group_of(*op) for name, op in ops.items()}
  assert groups['add_fusion.1'] == 'optimizer update'
  assert groups['copy_bitcast_fusion.2'] == 'layer / group norm'
  assert groups['mul.3'] == 'activation (GELU)'
  assert groups['and.4'] == 'finiteness guard'
  assert groups['ynn_fusion'] == 'dense / matmul'
  assert groups['p'] == 'other (parameter)'


def test_demo_steps_variants_carry_their_overrides():
  import demo_steps  # pylint: disable=g-import-not-at-top
  assert demo_steps._split_variants('demo,demo_recipe:train.pair_shift=0.06,optim.lr=0.001,'
                                    'demo_split') == [
      'demo', 'demo_recipe:train.pair_shift=0.06,optim.lr=0.001', 'demo_split']
  config = demo_steps._config('demo_recipe:train.pair_shift=0.06,optim.lr=0.001')
  assert (config.variant, config.train.pair_shift, config.optim.lr) == ('demo_recipe', 0.06, 0.001)
  assert demo_steps._config('demo_recipe').train.pair_shift == 0.0
  with pytest.raises(SystemExit, match="no field 'train.pair_shfit'"):
    demo_steps._config('demo:train.pair_shfit=0.1')
  with pytest.raises(SystemExit, match='not key=value'):
    demo_steps._config('demo:train.pair_shift')


def test_compiled_flops_counts_a_matmul_and_mfu_credits_them_against_the_peak():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
  assert common.compiled_flops(jax.jit(jnp.dot), a, b) == 2 * 8 * 16 * 4
  peak = {'best_flops_per_s': 1000.0}
  # 1,024 FLOPs in 2 s against a 1,000 FLOP/s peak; a peer at 0.4 leaves room for 2.5x at most.
  assert common.mfu(1024.0, 2.0, peak) == pytest.approx(0.512)
  assert 1 / common.mfu(800.0, 2.0, peak) == pytest.approx(2.5)


def test_matmul_shapes_lists_the_vision_layers_products_with_their_flops():
  import matmul_shapes  # pylint: disable=g-import-not-at-top
  products = matmul_shapes.layer_products('small')
  # 32 images of 64 px in 8 px patches: 64 patches + the class token = 65 tokens each.
  assert len(products) == 18 and products[0] == ('qkvo x@W', 2080, 192, 192)
  assert ('fc1 x.T@dy', 192, 2080, 768) in products
  # Forward and both gradients of 4 (192 x 192) and 2 (192 x 768) products:
  # 3 x 2 x 2080 x (4 + 8) x 192^2.
  assert sum(2 * m * k * n for _, m, k, n in products) == 3 * 2 * 2080 * 12 * 192**2


@pytest.mark.parametrize('variant', ['im2col_conv', 'patch_kernel_grad'])
@pytest.mark.parametrize('kernel,stride', [(3, 1), (3, 2), (1, 2), (7, 2)])
def test_step_variants_convolutions_equal_resnets_in_value_and_gradient(variant, kernel, stride):
  # A variant's timing means something only if it computes resnet's convolution.
  import jax
  import jax.numpy as jnp

  import step_variants
  from stbir_jax.models import resnet
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
  conv = resnet._conv(4, kernel, stride, jnp.float32, 'c')  # pylint: disable=protected-access
  params = conv.init(jax.random.PRNGKey(1), x)
  loss = lambda m: lambda p, t: jnp.sum(jnp.sin(m.apply(p, t)))
  want, want_grads = jax.value_and_grad(loss(conv), argnums=(0, 1))(params, x)
  with step_variants.VARIANTS[variant](None):
    changed = resnet._conv(4, kernel, stride, jnp.float32, 'c')  # pylint: disable=protected-access
  got, got_grads = jax.value_and_grad(loss(changed), argnums=(0, 1))(params, x)
  assert got == pytest.approx(float(want), rel=1e-5)
  for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
    assert g.shape == w.shape
    assert jnp.allclose(g, w, atol=1e-4), float(jnp.abs(g - w).max())
