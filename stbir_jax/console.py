"""What a person watching a run sees: a few short lines, not the metrics.

Every metric goes to TensorBoard (workdir/events.*) whatever the console shows. The console
(stdout, main process only) gets one line when the run starts, one when a stage starts, one
progress line every config.train.log_every steps and one line per evaluation; the results
table is printed at the end by train.py. `verbose=True` (`main.py --verbose`) also logs every
metric at every log_every step, as clu's LoggingWriter does (the full dump).

  new run in /tmp/demo: 300 steps, 1 stage, 1 cpu device
  stage 1/1 joint: steps 0-300, sketch+text queries, trains sketch, photo, text, ...
  [1/1 joint] step  50/300 ( 17%)  loss 3.8123  2.41 steps/s  ETA 1m44s
  eval at step 300 (21s)  Acc@1 %  shoes: sketch 41.2  text 30.5  sketch+text 63.1
"""

from __future__ import annotations

import math
import os
import sys
import time

from clu import metric_writers


def duration(seconds: float) -> str:
  """42s, 3m05s, 1h02m; '?' when unknown (no rate yet, or not finite)."""
  if not math.isfinite(seconds) or seconds < 0:
    return '?'
  s = round(seconds)
  if s < 60:
    return f'{s}s'
  if s < 3600:
    return f'{s // 60}m{s % 60:02d}s'
  return f'{s // 3600}h{s // 60 % 60:02d}m'


def _plural(n: int, noun: str) -> str:
  return f'{n} {noun}{"s" * (n != 1)}'


def start_line(workdir, start: int, total: int, num_stages: int, num_devices: int,
               platform: str) -> str:
  """new run in /tmp/demo: 300 steps, 1 stage, 1 cpu device"""
  what = f'new run in {workdir}' if start == 0 else f'resumed {workdir} at step {start}'
  return (f'{what}: {total} steps, {_plural(num_stages, "stage")}, '
          f'{_plural(num_devices, platform + " device")}')


def stage_line(stage, num_stages: int, frozen=()) -> str:
  """stage 2/3 photo_refine: steps 100-200, sketch queries, trains photo, prototypes

  A group the stage would train but `frozen` names (its optim.group_lr_scale is 0) is listed
  apart: "trains sketch, text; photo frozen".
  """
  trains = [g for g in stage.train if g not in frozen]
  held = [g for g in stage.train if g in frozen]
  return (f'stage {stage.index + 1}/{num_stages} {stage.name}: steps {stage.start}-{stage.end}, '
          f'{stage.query} queries, trains {", ".join(trains) or "nothing"}'
          + (f'; {", ".join(held)} frozen' if held else ''))


def rate(steps_per_sec: float) -> str:
  """Three significant digits at most, never an exponent: 512, 12.3, 2.41, 0.0031; '?' unknown."""
  if not math.isfinite(steps_per_sec) or steps_per_sec <= 0:
    return '?'
  if steps_per_sec >= 100:
    return f'{steps_per_sec:.0f}'
  return f'{steps_per_sec:.{max(0, 2 - math.floor(math.log10(steps_per_sec)))}f}'


def progress_line(stage_name: str, stage_number: int, num_stages: int, step: int, total: int,
                  loss: float, steps_per_sec: float, eta_seconds: float) -> str:
  """[2/3 photo_refine] step  150/3000 (  5%)  loss 2.3141  1.52 steps/s  ETA 31m15s"""
  width = len(str(total))
  return (f'[{stage_number}/{num_stages} {stage_name}] step {step:>{width}}/{total} '
          f'({100 * step / total:3.0f}%)  loss {loss:.4f}  {rate(steps_per_sec)} steps/s  '
          f'ETA {duration(eta_seconds)}')


def eval_line(step: int, results: dict, seconds: float) -> str:
  """eval at step 300 (21s)  Acc@1 %  shoes: sketch 41.2  text 30.5  sketch+text 63.1

  Acc@1 per dataset configuration and query mode, from the '<config>/<mode>/acc@1' keys of the
  retrieval evaluator (stbir_jax/evaluate.py); the other metrics are in TensorBoard and, after
  the last evaluation, in workdir/results.md."""
  per_config = {}
  for key, value in results.items():
    parts = key.split('/')
    if len(parts) == 3 and parts[2] == 'acc@1':
      per_config.setdefault(parts[0], []).append(f'{parts[1]} {100 * float(value):.1f}')
  head = f'eval at step {step} ({duration(seconds)})'
  if not per_config:
    return f'{head}  (no retrieval results)'
  return f'{head}  Acc@1 %  ' + '  '.join(f'{c}: ' + '  '.join(m) for c, m in per_config.items())


def metric_writer(workdir, is_main: bool, verbose: bool):
  """TensorBoard summaries on the main process, as before; the logging writer (one line of every
  metric per write) only with `verbose`."""
  if verbose:
    return metric_writers.create_default_writer(workdir, just_logging=not is_main)
  if not is_main:
    return metric_writers.MultiWriter([])
  return metric_writers.AsyncMultiWriter([metric_writers.SummaryWriter(os.fspath(workdir))])


class Console:
  """Prints the run's lines on the main process; measures steps/s between progress lines, with
  evaluation time left out, and the ETA of the whole run from it."""

  def __init__(self, total_steps: int, start_step: int, num_stages: int, enabled: bool = True,
               out=None, frozen=()):
    self.total = int(total_steps)
    self.num_stages = num_stages
    self.frozen = tuple(frozen)   # groups at optim.group_lr_scale 0, named apart on stage lines
    self.enabled = enabled
    self._out = out
    self._last_step = int(start_step)
    self._last_time = time.monotonic()
    self._excluded = 0.0   # seconds since the last progress line spent evaluating

  def print(self, line: str) -> None:
    if self.enabled:
      print(line, file=self._out or sys.stdout, flush=True)

  def start(self, workdir, num_devices: int, platform: str) -> None:
    self.print(start_line(workdir, self._last_step, self.total, self.num_stages, num_devices,
                          platform))

  def stage(self, stage) -> None:
    self.print(stage_line(stage, self.num_stages, self.frozen))

  def progress(self, step: int, stage, loss: float) -> None:
    now = time.monotonic()
    elapsed = now - self._last_time - self._excluded
    rate = (step - self._last_step) / elapsed if elapsed > 0 else float('nan')
    eta = (self.total - step) / rate if rate > 0 else float('nan')
    self._last_step, self._last_time, self._excluded = step, now, 0.0
    self.print(progress_line(stage.name, stage.index + 1, self.num_stages, step, self.total,
                             loss, rate, eta))

  def evaluation(self, step: int, results: dict, seconds: float) -> None:
    self._excluded += seconds
    self.print(eval_line(step, results, seconds))
