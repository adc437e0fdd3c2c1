"""Pretrained Hugging Face checkpoints -> our tower configs and params.

  tower_config_from_hf(src, 'vision' | 'text') -> ConfigDict for config.model.<tower>
  load_tower_params(src, tower, expected_params=None) -> the tower's `backbone` params (numpy)
  load_projection(src, tower) -> the checkpoint's projection kernel (in, out) or None
  load_pretrained(config, params_like) -> {group: {'backbone': ..., ['proj': ...]}} (numpy)
  merge_pretrained(params, pretrained) -> params with those subtrees replaced (jit-safe)
  init_from_pretrained(config, params) -> merge_pretrained(params, load_pretrained(...))

A group (models/stbir.py) is params[group] = {'backbone': tower, 'proj': {'kernel': (C, D)}} for
group in sketch / photo (image towers, tower='vision') and text (tower='text').
"""

import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from stbir_jax.convert import bert, clip, hub, resnet, siglip, vit
from stbir_jax.convert.hub import ConvertError

ARCHITECTURES = (clip, siglip, bert, resnet, vit)
TOWERS = ('vision', 'text')
GROUPS = {'sketch': 'vision', 'photo': 'vision', 'text': 'text'}
# The keys of config.model.<group> (configs/base.py) a converted tower config carries.
_IMAGE_DEFAULTS = dict(kind='vit', depth=18, width=64, norm='group', stem_pool=True, head_width=0,
                       patch_size=16, hidden=768, layers=12, heads=12, mlp_dim=3072, pool='cls',
                       init='')
# Keys that fix parameter shapes/semantics: config and checkpoint must agree on them.
_STRUCTURAL = {'resnet': ('kind', 'depth', 'width', 'norm'),
               'vit': ('kind', 'patch_size', 'hidden', 'layers', 'heads', 'mlp_dim'),
               'clip_vit': ('kind', 'patch_size', 'hidden', 'layers', 'heads', 'mlp_dim'),
               'siglip_vit': ('kind', 'patch_size', 'hidden', 'layers', 'heads', 'mlp_dim'),
               'bert': ('kind', 'vocab_size', 'hidden', 'layers', 'heads', 'mlp_dim',
                        'max_positions'),
               'clip': ('kind', 'vocab_size', 'hidden', 'layers', 'heads', 'mlp_dim',
                        'max_positions'),
               'siglip': ('kind', 'vocab_size', 'hidden', 'layers', 'heads', 'mlp_dim',
                          'max_positions', 'projection_size')}
_DEFAULT_MAX_POSITIONS = {'bert': 512, 'clip': 77, 'siglip': 64}


def supported_model_types() -> dict:
  """{HF model_type: towers it provides}."""
  out = {}
  for arch in ARCHITECTURES:
    out.update(arch.MODEL_TYPES)
  return out


def _architecture(src: str, tower: str):
  """-> (architecture module, HF config) for `src`, checking it provides `tower`."""
  if tower not in TOWERS:
    raise ConvertError(f'tower={tower!r}; valid towers: {", ".join(TOWERS)}')
  hf_cfg = hub.read_config(src)
  model_type = hf_cfg.model_type
  supported = supported_model_types()
  for arch in ARCHITECTURES:
    if model_type in arch.MODEL_TYPES:
      if tower not in arch.MODEL_TYPES[model_type]:
        raise ConvertError(f'Checkpoint {src!r} (model_type {model_type!r}) has no {tower} '
                           f'tower; it provides: {", ".join(arch.MODEL_TYPES[model_type])}')
      return arch, hf_cfg
  raise ConvertError(f'Checkpoint {src!r}: unknown architecture model_type={model_type!r}; '
                     'supported model types: '
                     + ', '.join(f'{k} ({"/".join(v)})' for k, v in supported.items()))


def _where(src, tower):
  return f'checkpoint {src!r} ({tower} tower)'


def _raw_tower_config(src: str, tower: str) -> dict:
  converted = _converted(src, tower)
  if converted:
    return {k: v for k, v in converted['config'].items() if k != 'init'}
  arch, hf_cfg = _architecture(src, tower)
  if arch is bert:
    return bert.tower_config(hf_cfg, tower, _where(src, tower), src=src)
  return arch.tower_config(hf_cfg, tower, _where(src, tower))


def tower_config_from_hf(src: str, tower: str = 'vision') -> ml_collections.ConfigDict:
  """The config.model.<group> fields that build the tower this checkpoint fills (init=src)."""
  cfg = _raw_tower_config(src, tower)
  cfg.pop('image_size', None)
  if tower == 'vision':
    cfg = dict(_IMAGE_DEFAULTS, **cfg)
  return ml_collections.ConfigDict(dict(cfg, init=src))


def image_size(src: str):
  """The checkpoint's training resolution (HF config image_size), or None (ResNet, text)."""
  arch, hf_cfg = _architecture(src, 'vision')
  return arch.tower_config(hf_cfg, 'vision', _where(src, 'vision')).get('image_size')


def _convert_flat(src: str, tower: str):
  if _converted(src, tower):
    params, _ = load_converted(src)
    flat = {'/'.join(k): v for k, v in traverse_util.flatten_dict(params['backbone']).items()}
    return flat, [], params.get('proj', {}).get('kernel')
  arch, hf_cfg = _architecture(src, tower)
  state = hub.read_state_dict(src)
  flat, unexpected = arch.convert(state, hf_cfg, tower, _where(src, tower))
  return flat, unexpected, arch.projection(state, hf_cfg, tower)


def _shape_of(x):
  return tuple(np.shape(x)) if not hasattr(x, 'shape') else tuple(x.shape)


def match_params(flat: dict, expected, where: str, strict: bool = True, unexpected=()):
  """Checks converted `flat` {path: array} against the `expected` tree (arrays or shape structs).

  Shape mismatches always raise, naming the parameter and both shapes. Missing keys (in
  `expected`, not in the checkpoint) and unexpected ones (in the checkpoint, not in `expected`)
  raise when `strict`; otherwise they are logged by name, missing ones keep `expected`'s values.
  Returns the nested tree (numpy float32 leaves; missing leaves from `expected`).
  """
  want = {'/'.join(k): v for k, v in traverse_util.flatten_dict(expected).items()}
  missing = sorted(set(want) - set(flat))
  extra = sorted(set(flat) - set(want)) + list(unexpected)
  bad = [f'{k}: checkpoint {flat[k].shape} vs model {_shape_of(want[k])}'
         for k in sorted(set(flat) & set(want)) if tuple(flat[k].shape) != _shape_of(want[k])]
  if bad:
    raise ConvertError(f'{where}: shape mismatch in {len(bad)} parameter(s):\n  '
                       + '\n  '.join(bad)
                       + '\nThe config must build the checkpoint\'s architecture: use '
                       'stbir_jax.convert.tower_config_from_hf(src, tower).'
                       + ('\nA ViT position table has 1 + (resolution / patch_size)^2 rows: '
                          'config.data.resolution must be the checkpoint\'s image_size.'
                          if any(b.startswith('position_embedding:') for b in bad) else ''))
  report = []
  if missing:
    report.append(f'missing (not in the checkpoint) {len(missing)}: {", ".join(missing)}')
  if extra:
    report.append(f'unexpected (not in the model) {len(extra)}: {", ".join(extra)}')
  if report and strict:
    raise ConvertError(f'{where}: checkpoint and model differ; ' + '; '.join(report)
                       + '. Load with strict=False to keep the missing params as initialised.')
  if report:
    logging.warning('%s: partial load; %s', where, '; '.join(report))
  out = {k: np.asarray(flat[k], np.float32) for k in want if k in flat}
  out.update({k: want[k] for k in missing})
  return traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in out.items()})


def load_tower_params(src: str, tower: str, expected_params=None, strict: bool = True):
  """The tower's params (the `backbone` subtree of a group) from checkpoint `src`.

  With `expected_params` (the randomly initialised backbone subtree, or its eval_shape), names
  and shapes are checked against it (see match_params). Without, returns every converted tensor
  (unmapped checkpoint tensors raise when `strict`).
  """
  flat, unexpected, _ = _convert_flat(src, tower)
  where = _where(src, tower)
  if expected_params is not None:
    return match_params(flat, expected_params, where, strict, unexpected)
  if unexpected and strict:
    raise ConvertError(f'{where}: tensors no rule maps (unexpected): {", ".join(unexpected)}')
  return traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in flat.items()})


def load_projection(src: str, tower: str):
  """The checkpoint's projection (CLIP visual_/text_projection) as an (in, out) kernel, or None."""
  _, _, proj = _convert_flat(src, tower)
  return proj


def check_tower_config(cfg, src: str, tower: str, where: str) -> None:
  """config.model.<group> must build the tower the checkpoint fills; lists every difference."""
  want = _raw_tower_config(src, tower)
  have = {k: cfg[k] for k in cfg}
  if 'max_positions' in want and not have.get('max_positions'):
    have['max_positions'] = _DEFAULT_MAX_POSITIONS.get(have.get('kind'), 0)
  if want['kind'] == 'resnet' and 'norm' not in have:
    have['norm'] = 'group'
  if want['kind'] == 'siglip' and not have.get('projection_size'):
    have['projection_size'] = have.get('hidden')   # the text tower's default
  keys = _STRUCTURAL[want['kind']] if have.get('kind') == want['kind'] else ('kind',)
  diffs = [f'{where}.{k}={have.get(k)!r}, checkpoint has {want[k]!r}' for k in keys
           if have.get(k) != want[k]]
  if diffs:
    raise ConvertError(
        f'{where}.init={src!r} does not fit {where}:\n  ' + '\n  '.join(diffs)
        + f'\nSet {where} = stbir_jax.convert.tower_config_from_hf({src!r}, {tower!r}) (keeps the '
        'checkpoint\'s architecture), or override those keys.')


def load_pretrained(config, params_like, strict: bool = True) -> dict:
  """{group: {'backbone': tree, ['proj': {'kernel': ...}]}} for every group whose
  config.model.<group>.init is set; numpy float32, checked against `params_like` (the model's
  params or their jax.eval_shape). Groups without `init` are absent; {} when none is set."""
  out = {}
  for group, tower in GROUPS.items():
    cfg = config.model[group]
    src = cfg.init if 'init' in cfg else ''
    if not src:
      continue
    where = f'config.model.{group}'
    check_tower_config(cfg, src, tower, where)
    if group not in params_like or 'backbone' not in params_like[group]:
      raise ConvertError(f'{where}.init={src!r}: the params have no {group}/backbone subtree; '
                         f'top-level groups: {", ".join(params_like)}')
    flat, unexpected, proj = _convert_flat(src, tower)
    loaded = {'backbone': match_params(flat, params_like[group]['backbone'],
                                       f'{where}.init={src!r}', strict, unexpected)}
    want = _shape_of(params_like[group]['proj']['kernel'])
    if proj is not None and tuple(proj.shape) == want:
      loaded['proj'] = {'kernel': np.asarray(proj, np.float32)}
      logging.info('%s: loaded backbone and projection from %s.', where, src)
    elif proj is not None:
      logging.warning('%s: checkpoint projection %s does not fit proj/kernel %s (set '
                      'config.model.embed_dim=%d to load it); proj stays randomly initialised.',
                      where, tuple(proj.shape), want, proj.shape[1])
    else:
      logging.info('%s: loaded backbone from %s (no projection in the checkpoint; proj stays '
                   'randomly initialised).', where, src)
    if 'text_backbone' in params_like[group]:   # fusion.photo_towers = 2: both from src
      loaded['text_backbone'] = match_params(flat, params_like[group]['text_backbone'],
                                             f'{where}.init={src!r} (the text half\'s tower)',
                                             strict, unexpected)
    out[group] = loaded
  return out


def merge_pretrained(params, pretrained):
  """params with each pretrained[group][sub] subtree replaced, cast to the params' dtypes.

  Pure: usable inside jit (pass `pretrained` as an argument so weights are not baked in as
  constants)."""
  if not pretrained:
    return params
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  params = dict(params)
  for group, subtrees in pretrained.items():
    params[group] = dict(params[group])
    for sub, tree in subtrees.items():
      params[group][sub] = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), tree,
                                        params[group][sub])
  return params


def init_from_pretrained(config, params, strict: bool = True):
  """Replaces the towers named by config.model.{sketch,photo,text}.init in `params`."""
  return merge_pretrained(params, load_pretrained(config, params, strict=strict))


# ------------------------------------------------------------------------- converted directories

FORMAT = 'stbir_jax.convert'
PARAMS_FILE = 'params.safetensors'


def _converted(src: str, tower: str):
  """The metadata of a directory written by save_converted, or None (an HF checkpoint)."""
  meta = hub.read_json(src, 'config.json') if not src.startswith(hub.BUNDLED_PREFIX) else None
  if not meta or meta.get('format') != FORMAT:
    return None
  if meta['tower'] != tower:
    raise ConvertError(f'{src!r} holds a converted {meta["tower"]} tower, not a {tower} tower.')
  return meta


def save_converted(src: str, out_dir: str, tower: str = 'vision') -> str:
  """Converts `src` and writes out_dir/params.safetensors ('/'-joined names: backbone/...,
  proj/kernel when the checkpoint has a projection) and out_dir/config.json (tower config)."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top

  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  cfg = tower_config_from_hf(src, tower)
  flat, unexpected, proj = _convert_flat(src, tower)
  if unexpected:
    raise ConvertError(f'{_where(src, tower)}: tensors no rule maps: {", ".join(unexpected)}')
  tensors = {'backbone/' + k: np.ascontiguousarray(v, np.float32) for k, v in flat.items()}
  if proj is not None:
    tensors['proj/kernel'] = np.ascontiguousarray(proj, np.float32)
  os.makedirs(out_dir, exist_ok=True)
  save_file(tensors, os.path.join(out_dir, PARAMS_FILE), metadata={'format': FORMAT})
  meta = dict(format=FORMAT, tower=tower, source=src, config=cfg.to_dict(),
              projection=proj is not None)
  with open(os.path.join(out_dir, 'config.json'), 'w', encoding='utf-8') as f:
    json.dump(meta, f, indent=2)
  return out_dir


def load_converted(directory: str):
  """-> (params {'backbone': ..., ['proj': {'kernel': ...}]}, tower ConfigDict) of a directory
  written by save_converted (python -m stbir_jax.convert)."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top

  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  config_file = os.path.join(directory, 'config.json')
  params_file = os.path.join(directory, PARAMS_FILE)
  for f in (config_file, params_file):
    if not os.path.isfile(f):
      raise ConvertError(f'{directory!r} is not a converted tower: {f} is missing.')
  with open(config_file, encoding='utf-8') as f:
    meta = json.load(f)
  if meta.get('format') != FORMAT:
    raise ConvertError(f'{config_file}: format={meta.get("format")!r}, expected {FORMAT!r}.')
  flat = load_file(params_file)
  params = traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in flat.items()})
  return params, ml_collections.ConfigDict(meta['config'])
