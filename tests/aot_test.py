"""stbir_jax.aot: compiling for a TPU topology on a CPU host (libtpu), per-chip memory and cost,
FSDP lowering the per-chip state, the HLO census (collectives, whole-batch arrays) and the
does-not-fit message."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from configs import base
from stbir_jax import aot, hlo_census

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec('libtpu') is None,
    reason="libtpu is not installed: pip install -e '.[tpu]'")


def _smoke(fsdp=1):
  config = base.get_config('smoke')
  config.mesh.update({'data': -1, 'fsdp': fsdp})
  return config


def _quiet(_):
  pass


@needs_libtpu
def test_smoke_query_encoder_compiles_for_v5e_and_fsdp_4_lowers_argument_bytes():
  reports = {}
  for fsdp in (1, 4):
    (report,), problems = aot.run(_smoke(fsdp), ['v5e:2x2'], programs=['eval/encode_query'],
                                  log=_quiet)
    assert problems == []
    reports[fsdp] = report
  dp, sharded = reports[1], reports[4]
  assert dp['devices'] == 4 and dp['chip']['name'] == 'v5e'
  assert dp['mesh'] == {'data': 4, 'fsdp': 1, 'model': 1} and sharded['mesh']['fsdp'] == 4
  (row,) = dp['programs']
  assert row['program'] == 'eval/encode_query'
  for key in ('arguments', 'outputs', 'total'):
    assert row['hbm'][key] > 0, key
  assert row['hbm']['temporaries'] >= 0  # 0 for this tiny encoder
  assert row['hbm']['capacity'] == 16 * 2**30 and 0 < row['hbm']['headroom'] < 1
  assert row['flops'] > 0 and row['bytes_accessed'] > 0
  assert row['roofline']['step_s'] > 0 and 0 < row['roofline']['mfu'] <= 1
  # The smoke eval batch, 8, is also a width of the smoke ResNet: such arrays would be counted as
  # the batch, so the census says it did not count them.
  assert row['global_batch_arrays'] == {
      'batch': 8, 'skipped': 'a parameter has a dimension of 8; compile with another batch to '
                             'check'}
  # The smoke text tower's token embedding (30522 x 16 > FSDP_MIN_SIZE) is split 4 ways, so
  # every chip holds a quarter of it: the params one chip holds fall, and so do the compiled
  # arguments (by at least half as much: TPU layouts pad small arrays).
  saved = dp['state_per_chip']['params'] - sharded['state_per_chip']['params']
  assert saved >= 0.7 * 30522 * 16 * 4
  args_saved = row['hbm']['arguments'] - sharded['programs'][0]['hbm']['arguments']
  assert args_saved >= 0.5 * saved, (args_saved, saved)


@needs_libtpu
@pytest.mark.slow
def test_command_compiles_every_smoke_program_and_writes_json(tmp_path):
  out = tmp_path / 'aot.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'stbir_jax.aot', '--config=configs/base.py:smoke',
       '--topology=v5e:2x2', f'--out={out}'], cwd=ROOT, capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=ROOT), check=False, timeout=1800)
  assert proc.returncode == 0, proc.stderr[-2000:]
  (report,) = json.loads(out.read_text())['reports']
  assert [r['program'] for r in report['programs']] == [
      'train/sketch_photo', 'train/photo_refine', 'train/text_integration',
      'eval/encode_gallery', 'eval/encode_query']
  assert all(r['hbm']['total'] > 0 and r['flops'] > 0 for r in report['programs'])
  assert 'train/text_integration' in proc.stdout


def test_collectives_are_counted_by_kind_with_their_bytes():
  hlo = """
  %all-reduce.1 = f32[1024,512]{1,0} all-reduce(f32[1024,512]{1,0} %p), channel_id=1
  %ar-start = (f32[8]{0}, bf16[4,4]{1,0}) all-reduce-start(f32[8]{0} %a, bf16[4,4] %b)
  %ar-done = (f32[8]{0}, bf16[4,4]{1,0}) all-reduce-done(%ar-start)
  %ag-start = (bf16[64,768]{1,0}, bf16[512,768]{1,0}) all-gather-start(bf16[64,768] %x)
  %ag-done = bf16[512,768]{1,0} all-gather-done(%ag-start)
  ROOT %rs = f32[128]{0} reduce-scatter(f32[1024]{0} %g), dimensions={0}
  %fusion = f32[3]{0} fusion(%all-reduce.1), kind=kLoop
"""
  c = hlo_census.collectives(hlo)
  assert c['all-reduce'] == {'count': 2, 'bytes': 1024 * 512 * 4 + 8 * 4 + 16 * 2}
  assert c['all-gather'] == {'count': 1, 'bytes': 512 * 768 * 2}
  assert c['reduce-scatter'] == {'count': 1, 'bytes': 128 * 4}
  assert c['all-to-all'] == c['collective-permute'] == {'count': 0, 'bytes': 0}


def test_arrays_with_a_dimension_of_the_whole_batch_are_found_with_their_bytes():
  # A chip's program of a step with global batch 776 on 8 chips: 97 rows a chip, except the
  # gathered text activations (776 rows) and a 776 x 776 similarity matrix. What a fusion
  # computes inside itself has no buffer of its own.
  hlo = """
%fused_computation.7 (param_0: f32[776,776]) -> f32[97,512] {
  %param_0 = f32[776,776]{1,0} parameter(0)
  %inside.8 = f32[776,776]{1,0} exponential(f32[776,776]{1,0} %param_0)
  ROOT %r.9 = f32[97,512]{1,0} slice(%inside.8)
}

ENTRY %main.10 (param.1: bf16[97,224,224,3]) -> f32[97,512] {
  %param.1 = bf16[97,224,224,3]{3,2,1,0} parameter(0)
  %all-gather.2 = f32[776,32,256]{2,1,0} all-gather(f32[97,32,256]{2,1,0} %x), dimensions={0}
  %fusion.3 = f32[776,32,256]{2,1,0} fusion(%all-gather.2), kind=kLoop
  %dot.4 = f32[776,776]{1,0} dot(f32[776,512] %a, f32[776,512] %b)
  %tuple.5 = (s32[776]{0}, f32[97]{0}) tuple(%i, %j)
  ROOT %fusion.6 = f32[97,512]{1,0} fusion(%dot.4), kind=kLoop, calls=%fused_computation.7
}
"""
  whole = hlo_census.batch_arrays(hlo, 776)
  act, sim = 776 * 32 * 256 * 4, 776 * 776 * 4
  assert whole['batch'] == 776 and whole['count'] == 3  # a tuple holds no buffer of its own
  assert whole['bytes'] == 2 * act + sim
  assert whole['largest'][0] == {'shape': 'f32[776,32,256]', 'op': 'all-gather', 'count': 1,
                                 'bytes': act}
  assert [a['shape'] for a in whole['largest']] == [
      'f32[776,32,256]', 'f32[776,32,256]', 'f32[776,776]']
  assert hlo_census.batch_arrays(hlo, 97)['count'] == 2  # the per-chip rows, not the fusion's
  assert hlo_census.array_bytes('(f32[2,3]{1,0}, bf16[4]{0})') == [24, 8]


def test_a_step_that_does_not_fit_says_by_how_much_and_what_to_change():
  gib = 2**30
  row = {'program': 'train/joint', 'hbm': {'arguments': 3 * gib, 'temporaries': 20 * gib,
                                           'outputs': 0, 'code': 0, 'total': 23 * gib,
                                           'capacity': 16 * gib}}
  report = {'topology': 'v5e:2x4', 'chip': {'name': 'v5e'},
            'mesh': {'data': 8, 'fsdp': 1, 'model': 1}, 'remat': 'nothing',
            'state_per_chip': {'params': gib, 'opt_state': 2 * gib}, 'programs': [row]}
  config = base.get_config('full')
  (message,) = aot.misfits(report, config)
  # usable 0.85 * 16 - 3 = 10.6 GiB of temporaries: 1024 * 10.6 / 20 = 542.7 -> 536 (x 8).
  assert message.startswith('v5e:2x4 train/joint: needs 23.00 GiB per chip, 7.00 GiB (44%) more '
                            'than the 16.00 GiB of a v5e chip.')
  assert '--config.train.batch_size=536' in message
  assert '--config.model.remat=dots_saveable' in message
  assert '--config.mesh.fsdp=-1 --config.mesh.data=1 (params + optimiser state are 3.00 GiB' in (
      message)
  row['hbm']['total'] = 15 * gib
  assert aot.misfits(report, config) == []
