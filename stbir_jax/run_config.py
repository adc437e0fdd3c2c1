"""A run directory: its recorded config, what may change when it resumes, and its latest params.

  WORKDIR/config.json                      the config the run was started with (never rewritten
                                           while the run has checkpoints)
  WORKDIR/config_history/step_<N>.json     one file per accepted change: the step the run resumed
                                           at, the changed keys (before, after) and the whole
                                           config from then on

Resuming with a config that differs from the latest recorded one (config.json, or the newest
history file) is refused, listing the changed keys, unless the change is allowed (main's
--allow_config_change): a changed train.seed, optim.lr or train.num_steps silently makes a run
that no single config describes. Only the keys in FREE_TO_CHANGE may change without it (each is
the fix an error message suggests); they are recorded too. Model and data changes are refused
always (check_workdir_config): the checkpoints would not fit.

Everything here reads the workdir; the writes happen once the run is known to start.
`load_run` and `latest_params` read a finished (or running) run for evaluation, export and
comparison: its config as a ConfigDict and the model params of a checkpoint.
"""

from __future__ import annotations

import json

import ml_collections
import orbax.checkpoint as ocp

from stbir_jax import paths, stages
from stbir_jax.config_checks import ConfigError
from stbir_jax.exported import ExportError

CONFIG_FILE = 'config.json'
SOUP_FILE = 'soup.json'   # a weight soup (soup.py): params only, never resumed
HISTORY = 'config_history'
# Changes a resume accepts without --allow_config_change: the run stopped by a corrupt record
# continues with on_bad_record='skip', a NaN-stopped run with nan_policy='skip'.
FREE_TO_CHANGE = ('data.on_bad_record', 'train.nan_policy', 'model.fusion.calibrate')
# A run that calibrates after training (model.fusion.calibrate) recorded the weight it chose; its
# own command, at the weight it trains with, resumes it without the flag and calibrates again.
CALIBRATED_KEYS = ('model.fusion.sketch_weight',)
# Config sections whose change makes old checkpoints unusable in this workdir.
STRUCTURAL_KEYS = ('model', 'data')
# ... except these, which change how a run proceeds, not what it trains: e.g. a run stopped by a
# corrupt record resumes with data.on_bad_record='skip'; remat recomputes the same values.
RESUMABLE_KEYS = ('data.on_bad_record', 'model.remat', 'model.fusion.sketch_weight',
                  'model.fusion.calibrate')


def flatten(d, prefix='') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def check_is_directory(workdir) -> None:
  """Raises PathError when the workdir, or a folder above it, exists as a file."""
  workdir = paths.resolve(workdir)
  # A bucket has no files above a run's prefix that could block it.
  above = () if paths.is_url(workdir) else workdir.parents
  for path in (workdir, *above):
    if path.exists():
      if not path.is_dir():
        what = 'is a file' if path == workdir else f'lies below the file {path}'
        raise paths.PathError(f'--workdir {workdir} {what}; expected a directory (a new one is '
                              'created) or a URL.')
      return


def has_checkpoints(workdir) -> bool:
  """Whether WORKDIR/checkpoints holds a step (read only: nothing is created)."""
  directory = paths.resolve(workdir) / 'checkpoints'
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def _history_files(workdir) -> list:
  """The change files, oldest first: step_<N>.json, then step_<N>.1.json, ... for one step."""
  directory = paths.resolve(workdir) / HISTORY
  if not directory.is_dir():
    return []

  def order(path):
    parts = path.name.removeprefix('step_').removesuffix('.json').split('.')
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0

  return sorted((p for p in directory.iterdir() if p.name.startswith('step_')), key=order)


def recorded(workdir):
  """The latest recorded config as a dict (config.json with its accepted changes), or None; in
  today's layout (runs recorded before config.evals are translated: evals_from_old_layout; fields
  added since are filled in: with_added_fields)."""
  history = _history_files(workdir)
  if history:
    config = json.loads(history[-1].read_text())['config']
  else:
    path = paths.resolve(workdir) / CONFIG_FILE
    if not path.exists():
      return None
    config = json.loads(path.read_text())
  return with_added_fields(evals_from_old_layout(config))


# Training fields added after runs were recorded, with the value that trains as those runs did:
# without it a resume would list them as changed, and a loaded config would lack them.
ADDED_FIELDS = {('loss', 'triplet_mining'): 'hard', ('loss', 'triplet_queries'): 'all',
                ('model', 'fusion', 'sketch_weight'): 0.5, ('model', 'fusion', 'calibrate'): False,
                ('optim', 'schedule'): 'stage', ('loss', 'consistency'): 0.0,
                ('model', 'sketch_centre'): False, ('train', 'pair_shift'): 0.0,
                ('train', 'pair_warp'): 0.0, ('model', 'canonical_frame'): 'none',
                ('loss', 'gallery_from_clean_queries'): False, ('train', 'init_from'): '',
                ('train', 'init_from_step'): -1, ('loss', 'clean_pairs'): 0.0,
                ('loss', 'distill'): 0.0, ('loss', 'distill_temperature'): 1.0,
                ('model', 'sketch_align'): False, ('loss', 'align_jitter'): 0.0,
                ('model', 'sketch_align_learns'): 'both',
                ('train', 'pair_shift_after_align'): False}


def with_added_fields(config: dict) -> dict:
  """A recorded config dict with each of ADDED_FIELDS it lacks set to its old behaviour (a copy
  along each changed path; the input is not changed)."""
  for path, value in ADDED_FIELDS.items():
    config = _with_field(config, path, value)
  return config


def _with_field(node: dict, path: tuple, value) -> dict:
  """`node` with node[path] = value where the sections of `path` exist and the key does not."""
  name, rest = path[0], path[1:]
  if not rest:
    return node if name in node else dict(node, **{name: value})
  if not isinstance(node.get(name), dict):
    return node
  return dict(node, **{name: _with_field(node[name], rest, value)})


# The fields of the one shared `eval` section of runs recorded before config.evals that became
# every evaluator's own, and the default of one that came later.
_OLD_EVAL_FIELDS = ('every_steps', 'batch_size', 'split', 'modes', 'gallery_scope')
_OLD_EVAL_DEFAULTS = {'gallery_scope': 'all'}


def evals_from_old_layout(config: dict) -> dict:
  """A recorded config dict in today's layout. Runs recorded before each evaluator had its own
  section held one shared `eval` (evaluators, every_steps, batch_size, split, modes,
  gallery_scope, robustness_buckets): each evaluator it names gets a section config.evals.<name>
  with those fields (robustness: `buckets` = robustness_buckets). Other configs are returned as
  they are."""
  if 'eval' not in config or 'evals' in config:
    return config
  config = dict(config)
  shared = config.pop('eval')
  fields = {k: shared.get(k, _OLD_EVAL_DEFAULTS.get(k)) for k in _OLD_EVAL_FIELDS}
  evals = {}
  for name in shared['evaluators']:
    evals[name] = dict(fields, modes=list(fields['modes']))
    if name == 'robustness':
      evals[name]['buckets'] = list(shared['robustness_buckets'])
  config['evals'] = evals
  return config


def changed_keys(old: dict, new: dict) -> dict:
  """{dotted key: (old value, new value)} of the keys whose value differs."""
  a, b = flatten(old), flatten(new)
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume(config, workdir, allow_change: bool) -> dict:
  """The changes of `config` against the run's recorded config ({} when none, or when the
  workdir holds no checkpoint). Raises ConfigError listing them unless `allow_change`, or unless
  every one is in FREE_TO_CHANGE."""
  if not has_checkpoints(workdir):
    return {}
  old = recorded(workdir)
  if old is None:
    return {}
  changes = changed_keys(old, json.loads(config.to_json_best_effort()))
  free = FREE_TO_CHANGE + (CALIBRATED_KEYS if config.model.fusion.get('calibrate') else ())
  refused = [k for k in changes if k not in free]
  if refused and not allow_change:
    listed = ', '.join(f'{k}: {changes[k][0]!r} -> {changes[k][1]!r}' for k in refused[:10])
    more = f' and {len(refused) - 10} more' if len(refused) > 10 else ''
    raise ConfigError(
        f'{paths.resolve(workdir)} holds a run started with another config; changed keys: '
        f'{listed}{more}. Resume with the recorded config ({CONFIG_FILE}'
        + (f' and {HISTORY}/' if _history_files(workdir) else '')
        + '), use a new --workdir, or pass --allow_config_change to continue with the new one '
        f'(recorded in {HISTORY}/).')
  return changes


def check_workdir_config(config, workdir, has_checkpoint: bool) -> None:
  """Refuses to resume checkpoints written under a different model or data config."""
  path = paths.resolve(workdir) / CONFIG_FILE
  if has_checkpoint and path.exists():
    # A model field added since the run started holds the value it trained with.
    old = with_added_fields(json.loads(path.read_text()))
    new = json.loads(config.to_json_best_effort())
    diffs = []
    for section in STRUCTURAL_KEYS:
      a, b = flatten(old.get(section, {})), flatten(new.get(section, {}))
      diffs += [f'{section}.{k}: checkpoint {a.get(k)!r} vs now {b.get(k)!r}'
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k) and f'{section}.{k}' not in RESUMABLE_KEYS]
    if diffs:
      raise ConfigError(
          f'{workdir} holds checkpoints of an incompatible config; differences:\n  '
          + '\n  '.join(diffs) + '\nUse a new --workdir, or the config the run was started with.')


def record_start(config, workdir) -> None:
  (paths.resolve(workdir) / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))


def record_change(config, workdir, step: int, changes: dict) -> None:
  """Writes config_history/step_<step>.json (a suffix when that step changed before)."""
  directory = paths.resolve(workdir) / HISTORY
  directory.mkdir(parents=True, exist_ok=True)
  path, n = directory / f'step_{step:09d}.json', 1
  while path.exists():
    path, n = directory / f'step_{step:09d}.{n}.json', n + 1
  path.write_text(json.dumps({
      'step': step, 'changed': {k: list(v) for k, v in changes.items()},
      'config': json.loads(config.to_json_best_effort())}, indent=2))


# ------------------------------------------------------------------------------------ reading a run


def load_run(workdir):
  """(resolved run directory, its config as a ConfigDict): config.json with the changes accepted
  on resume (config_history/)."""
  run = paths.resolve(workdir)
  config_path = run / CONFIG_FILE
  if not config_path.exists():
    raise ExportError(f'{config_path} is missing; --workdir must be a training run directory.')
  return run, config_from_dict(recorded(run))


def config_from_dict(value):
  """A ConfigDict from a config's JSON, with the dicts inside lists (curriculum buckets, stages)
  made ConfigDicts too, as configs/base.py builds them; ConfigDict leaves them plain dicts."""
  if isinstance(value, dict):
    return ml_collections.ConfigDict({k: config_from_dict(v) for k, v in value.items()})
  if isinstance(value, list):
    return [config_from_dict(v) for v in value]
  return value


def latest_params(workdir, step=None):
  """Model params of a run's checkpoint (the latest unless `step`), as numpy arrays; `workdir`
  may be a gs:// URL."""
  root = paths.resolve(workdir) / 'checkpoints'
  # On gs:// a step being written is a plain <step> directory without commit_success.txt yet.
  steps = sorted(int(d.name) for d in root.iterdir()
                 if d.name.isdigit() and ocp.utils.is_checkpoint_finalized(d)
                 ) if root.is_dir() else []
  if not steps:
    raise ExportError(f'{root} holds no checkpoint; train first (python -m stbir_jax.main).')
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise ExportError(f'No checkpoint for step {step} in {root}; available: {steps}.')
  state = ocp.StandardCheckpointer().restore(root / str(step) / 'state')
  return step, {k: state['params'][k] for k in stages.MODEL_GROUPS}
