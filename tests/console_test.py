"""The console lines of a run (stbir_jax/console.py) on hand-made values; the lines of a real
smoke run are checked in tests/train_test.py (test_smoke_run_console_is_a_few_short_lines)."""

import glob
import io
import os

import numpy as np
import pytest
from absl import logging

from stbir_jax import console, stages


def _stage(index=1, name='photo_refine'):
  return stages.Stage(index=index, name=name, start=100, end=200, train=('photo', 'prototypes'),
                      losses=('contrastive',), query='sketch', lr_scale=1.0)


def test_progress_line():
  assert console.progress_line('photo_refine', 2, 3, 150, 3000, 2.31414, 1.5234, 1875.4) == (
      '[2/3 photo_refine] step  150/3000 (  5%)  loss 2.3141  1.52 steps/s  ETA 31m15s')
  assert console.progress_line('joint', 1, 1, 300, 300, float('nan'), float('nan'),
                               float('nan')) == (
      '[1/1 joint] step 300/300 (100%)  loss nan  ? steps/s  ETA ?')


def test_eval_line_shows_acc1_per_configuration_and_mode():
  results = {'shoes/sketch/acc@1': 0.4125, 'shoes/sketch/mAP': 0.5, 'shoes/text/acc@1': 0.3,
             'shoes/sketch+text/acc@1': 0.63125, 'shoes/mild/sketch/acc@1': 0.2,
             'chairs/sketch/acc@1': 1.0}
  assert console.eval_line(300, results, 21.4) == (
      'eval at step 300 (21s)  Acc@1 %  shoes: sketch 41.2  text 30.0  sketch+text 63.1  '
      'chairs: sketch 100.0')
  assert console.eval_line(5, {'shoes/mild/sketch/acc@1': 0.2}, 3725) == (
      'eval at step 5 (1h02m)  (no retrieval results)')


def test_start_and_stage_lines():
  assert console.start_line('/tmp/run', 0, 300, 1, 1, 'cpu') == (
      'new run in /tmp/run: 300 steps, 1 stage, 1 cpu device')
  assert console.start_line('/tmp/run', 150, 300, 3, 8, 'tpu') == (
      'resumed /tmp/run at step 150: 300 steps, 3 stages, 8 tpu devices')
  assert console.stage_line(_stage(), 3) == (
      'stage 2/3 photo_refine: steps 100-200, sketch queries, trains photo, prototypes')
  assert console.stage_line(_stage(), 3, frozen=('photo', 'text')) == (
      'stage 2/3 photo_refine: steps 100-200, sketch queries, trains prototypes; photo frozen')
  assert console.stage_line(_stage(), 3, frozen=('photo', 'prototypes')) == (
      'stage 2/3 photo_refine: steps 100-200, sketch queries, trains nothing; '
      'photo, prototypes frozen')


@pytest.mark.parametrize('seconds, text', [(0, '0s'), (59.4, '59s'), (59.6, '1m00s'),
                                           (185, '3m05s'), (3720, '1h02m'), (-1, '?')])
def test_duration(seconds, text):
  assert console.duration(seconds) == text


@pytest.mark.parametrize('value, text', [(512.3, '512'), (12.34, '12.3'), (2.414, '2.41'),
                                         (0.0031, '0.00310'), (0.0, '?')])
def test_rate_has_three_digits_and_no_exponent(value, text):
  assert console.rate(value) == text


def test_console_rate_and_eta_leave_evaluation_time_out(monkeypatch):
  now = [1000.0]
  monkeypatch.setattr(console.time, 'monotonic', lambda: now[0])
  out = io.StringIO()
  c = console.Console(total_steps=300, start_step=100, num_stages=3, out=out)
  now[0] += 30.0   # 50 steps in 20 s of training and a 10 s evaluation
  c.evaluation(120, {'shoes/sketch/acc@1': 0.5}, 10.0)
  c.progress(150, _stage(), 4.0)
  now[0] += 50.0   # 50 steps in 50 s
  c.progress(200, _stage(), 3.0)
  c2 = console.Console(total_steps=300, start_step=0, num_stages=1, out=out, enabled=False)
  c2.progress(10, _stage(), 1.0)
  assert out.getvalue().splitlines() == [
      'eval at step 120 (10s)  Acc@1 %  shoes: sketch 50.0',
      '[2/3 photo_refine] step 150/300 ( 50%)  loss 4.0000  2.50 steps/s  ETA 1m00s',
      '[2/3 photo_refine] step 200/300 ( 67%)  loss 3.0000  1.00 steps/s  ETA 1m40s']


def _events_scalars(workdir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  found = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        found[(event.step, v.tag)] = float(tf.make_ndarray(v.tensor))
  return found


@pytest.mark.parametrize('verbose', [False, True])
def test_metric_writer_logs_every_metric_only_when_verbose(tmp_path, caplog, verbose):
  previous = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)  # the dump would show at INFO: only `verbose` decides
  try:
    with caplog.at_level('INFO'):
      writer = console.metric_writer(tmp_path, is_main=True, verbose=verbose)
      writer.write_scalars(7, {'loss': 1.5, 'curriculum/weight/clean': 0.25})
      writer.flush()
  finally:
    logging.set_verbosity(previous)
  dumped = [r.getMessage() for r in caplog.records if 'curriculum/weight/clean' in r.getMessage()]
  assert dumped == (['[7] curriculum/weight/clean=0.25, loss=1.5'] if verbose else [])
  # TensorBoard gets every metric either way.
  scalars = _events_scalars(str(tmp_path))
  assert scalars[(7, 'loss')] == 1.5
  np.testing.assert_allclose(scalars[(7, 'curriculum/weight/clean')], 0.25)


@pytest.mark.parametrize('argv, verbose', [([], False), (['--verbose'], True),
                                           (['--verbosity=0'], True), (['--verbosity=-1'], False)])
def test_main_verbose_flag_or_an_explicit_info_verbosity_restores_the_dump(argv, verbose):
  from stbir_jax import main  # pylint: disable=g-import-not-at-top
  try:
    main.FLAGS(['main', '--config=configs/base.py:smoke', '--workdir=/tmp/unused'] + argv)
    assert main.verbose() is verbose
  finally:
    main.FLAGS.unparse_flags()
