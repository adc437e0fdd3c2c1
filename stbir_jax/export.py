r"""Export a trained run for downstream use, and load it back without the training code.

  python -m stbir_jax.export --workdir=workdirs/demo --out=exports/demo

writes to --out:
  config.json            the run's full config
  params.safetensors     model parameters, flattened with '/'-joined names
  encode_query.jax       serialized jax.export of encode_query(params, sketch, text_ids,
                         text_mask, has_sketch, has_text), symbolic batch dimension
  encode_gallery.jax     serialized jax.export of encode_gallery(params, image), symbolic batch
  tokenizer/             the tokenizer's files (Hugging Face format)
  model_card.md          what the model is, its training config and measured results
  manifest.json          input shapes and dtypes, file list, versions

`stbir_jax.load_exported(DIR)` returns an `ExportedModel` whose `encode_query`,
`encode_gallery` and `tokenize` need neither this package's training code nor its config
system: only jax, numpy, safetensors and transformers' tokenizer.

  python -m stbir_jax.export --format=transformers --workdir=workdirs/clip --out=exports/hf

writes the towers of a CLIP-layout run (clip_vit sketch and photo, clip text) for PyTorch:
OUT/ loads with transformers.CLIPModel.from_pretrained (photo + text), OUT/sketch/ with
CLIPVisionModelWithProjection.from_pretrained (stbir_jax/convert/to_transformers.py,
docs/pretrained.md).
"""

import dataclasses
import json
import os
from typing import Callable

import numpy as np

FORMATS = ('stbir', 'transformers')   # --format; 'stbir' is the jax.export directory above
FILES = ('config.json', 'params.safetensors', 'encode_query.jax', 'encode_gallery.jax',
         'manifest.json')


class ExportError(RuntimeError):
  pass


# ------------------------------------------------------------------------------------ loading


@dataclasses.dataclass
class ExportedModel:
  """Embedding functions of an exported STBIR model (inputs as in stbir_jax.data.pipeline)."""
  resolution: int
  max_text_len: int
  embed_dim: int
  params: dict
  _query: Callable
  _gallery: Callable
  _tokenizer: object

  def encode_query(self, sketch, text_ids, text_mask, has_sketch, has_text):
    """sketch uint8 (B,R,R) stroke map; text ids/mask int32 (B,L); flags bool (B,) -> (B,D)."""
    return self._query(self.params, sketch, text_ids, text_mask, has_sketch, has_text)

  def encode_gallery(self, image):
    """image uint8 (B,R,R,3) -> (B,D) unit-norm embeddings."""
    return self._gallery(self.params, image)

  def tokenize(self, texts):
    """list of str -> (ids int32 (N,L), mask int32 (N,L))."""
    enc = self._tokenizer(list(texts), max_length=self.max_text_len, padding='max_length',
                          truncation=True, return_tensors='np')
    return enc['input_ids'].astype(np.int32), enc['attention_mask'].astype(np.int32)


def _unflatten(flat: dict) -> dict:
  tree = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def load_exported(directory: str) -> ExportedModel:
  """Loads an export directory; a missing or corrupt file raises ExportError naming it."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax import export as jax_export  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  for name in FILES:
    if not os.path.exists(os.path.join(directory, name)):
      raise ExportError(f'{os.path.join(directory, name)} is missing; is {directory} a '
                        'directory written by `python -m stbir_jax.export`?')

  def read(name, loader):
    path = os.path.join(directory, name)
    try:
      return loader(path)
    except Exception as e:  # pylint: disable=broad-except
      raise ExportError(f'{path} is corrupt or unreadable: {type(e).__name__}: {e}') from e

  manifest = read('manifest.json', lambda p: json.load(open(p)))
  params = read('params.safetensors', load_file)
  params = jax.tree.map(jax.numpy.asarray, _unflatten(params))
  query = read('encode_query.jax', lambda p: jax_export.deserialize(bytearray(open(p, 'rb').read())))
  gallery = read('encode_gallery.jax',
                 lambda p: jax_export.deserialize(bytearray(open(p, 'rb').read())))
  tokenizer = None
  if 'tokenizer/' in manifest.get('files', ()) and not os.path.isdir(
      os.path.join(directory, 'tokenizer')):
    # Otherwise the first tokenize() would fail with "'NoneType' object is not callable".
    raise ExportError(f'{os.path.join(directory, "tokenizer")} is missing; the export lists it in '
                      'manifest.json. Re-export the run.')
  if os.path.isdir(os.path.join(directory, 'tokenizer')):
    from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
    tokenizer = read('tokenizer', AutoTokenizer.from_pretrained)
  return ExportedModel(
      resolution=manifest['resolution'], max_text_len=manifest['max_text_len'],
      embed_dim=manifest['embed_dim'], params=params, _query=jax.jit(query.call),
      _gallery=jax.jit(gallery.call), _tokenizer=tokenizer)


# ------------------------------------------------------------------------------------ writing


def _flatten(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}/'))
    else:
      out[f'{prefix}{k}'] = np.asarray(v)
  return out


def latest_params(workdir, step=None):
  """Model params of a run's checkpoint (the latest unless `step`), as numpy arrays; `workdir`
  may be a gs:// URL."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from stbir_jax import paths, stages  # pylint: disable=g-import-not-at-top

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


def export_model(config, params: dict, out: str, *, results_md: str = '',
                 step=None) -> None:
  """Writes the export directory for `params` of the model described by `config`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax import export as jax_export  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  from stbir_jax.data.tokenizer import get_tokenizer  # pylint: disable=g-import-not-at-top
  from stbir_jax.models.stbir import STBIR  # pylint: disable=g-import-not-at-top

  os.makedirs(out, exist_ok=True)
  model = STBIR.from_config(config)
  r, l = config.data.resolution, config.data.max_text_len
  (b,) = jax_export.symbolic_shape('b')
  params_spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                             params)

  def encode_query(p, sketch, text_ids, text_mask, has_sketch, has_text):
    return model.apply({'params': p}, sketch, text_ids, text_mask, has_sketch, has_text,
                       method=STBIR.encode_query)

  def encode_gallery(p, image):
    return model.apply({'params': p}, image, method=STBIR.encode_gallery)

  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype)
  query = jax_export.export(jax.jit(encode_query))(
      params_spec, spec((b, r, r), jnp.uint8), spec((b, l), jnp.int32), spec((b, l), jnp.int32),
      spec((b,), jnp.bool_), spec((b,), jnp.bool_))
  gallery = jax_export.export(jax.jit(encode_gallery))(params_spec, spec((b, r, r, 3), jnp.uint8))
  with open(os.path.join(out, 'encode_query.jax'), 'wb') as f:
    f.write(query.serialize())
  with open(os.path.join(out, 'encode_gallery.jax'), 'wb') as f:
    f.write(gallery.serialize())
  save_file(_flatten(jax.device_get(params)), os.path.join(out, 'params.safetensors'))
  with open(os.path.join(out, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  get_tokenizer(config.data.tokenizer).save(os.path.join(out, 'tokenizer'))
  manifest = dict(resolution=r, max_text_len=l, embed_dim=config.model.embed_dim, step=step,
                  jax_version=jax.__version__, files=list(FILES) + ['tokenizer/'],
                  inputs=dict(
                      encode_query=dict(sketch=f'uint8[b,{r},{r}] stroke-order map',
                                        text_ids=f'int32[b,{l}]', text_mask=f'int32[b,{l}]',
                                        has_sketch='bool[b]', has_text='bool[b]'),
                      encode_gallery=dict(image=f'uint8[b,{r},{r},3]')))
  with open(os.path.join(out, 'manifest.json'), 'w') as f:
    json.dump(manifest, f, indent=2)
  with open(os.path.join(out, 'model_card.md'), 'w') as f:
    f.write(_model_card(config, step, results_md))


def _model_card(config, step, results_md: str) -> str:
  m = config.model
  towers = '\n'.join(
      f'- {name}: {t.kind}' + (f'-{t.depth} (width {t.width})' if t.kind == 'resnet' else
                               f' (patch {t.patch_size}, hidden {t.hidden}, {t.layers} layers)')
      for name, t in (('sketch tower', m.sketch), ('photo tower', m.photo)))
  return f"""# STBIR model card

A dual encoder for fine-grained image retrieval from a sketch plus a short text
(STBIR, arXiv 2604.15735), trained with stbir_jax (config variant `{config.variant}`, step {step}).

## Model
{towers}
- text tower: {m.text.kind} ({m.text.layers} layers, hidden {m.text.hidden}), tokenizer `{config.data.tokenizer}`
- fusion: {m.fusion.kind}; embedding size {m.embed_dim}; input resolution {config.data.resolution} px

## Use
```python
import stbir_jax
model = stbir_jax.load_exported('THIS_DIR')
ids, mask = model.tokenize(['a red leather shoe'])
q = model.encode_query(sketch, ids, mask, has_sketch, has_text)   # (B, {m.embed_dim})
g = model.encode_gallery(images)                                   # (B, {m.embed_dim})
scores = q @ g.T
```

## Training data
{config.data.name}: {', '.join(config.data.configs)}

## Measured results
{results_md or '(no results.md in the run directory)'}

## Training config
See `config.json`.
"""


def run_config(workdir):
  """(resolved run directory, its config as a ConfigDict): config.json with the changes accepted
  on resume (config_history/, stbir_jax/run_config.py)."""
  from stbir_jax import paths  # pylint: disable=g-import-not-at-top
  from stbir_jax import run_config as recorded_config  # pylint: disable=g-import-not-at-top
  run = paths.resolve(workdir)
  config_path = run / 'config.json'
  if not config_path.exists():
    raise ExportError(f'{config_path} is missing; --workdir must be a training run directory.')
  return run, config_from_dict(recorded_config.recorded(run))


def config_from_dict(value):
  """A ConfigDict from a config's JSON, with the dicts inside lists (curriculum buckets, stages)
  made ConfigDicts too, as configs/base.py builds them; ConfigDict leaves them plain dicts."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  if isinstance(value, dict):
    return ml_collections.ConfigDict({k: config_from_dict(v) for k, v in value.items()})
  if isinstance(value, list):
    return [config_from_dict(v) for v in value]
  return value


def _check_local(out: str) -> None:
  from stbir_jax import paths  # pylint: disable=g-import-not-at-top
  if paths.is_url(out):
    # The export is read with local-file loaders (safetensors, tokenizers); copy it up afterwards.
    raise ExportError(f'--out={out}: expected a local directory; the export is loaded from local '
                      'files. Copy it to the bucket afterwards (gcloud storage cp -r).')


def export_run(workdir, out: str, step=None) -> int:
  """Exports checkpoint `step` (default: the latest) of the run in `workdir` (a local directory
  or a gs:// URL) to the local directory `out`; returns the step."""
  _check_local(out)
  run, config = run_config(workdir)
  step, params = latest_params(run, step)
  results_path = run / 'results.md'
  results_md = results_path.read_text() if results_path.exists() else ''
  export_model(config, params, out, results_md=results_md, step=step)
  return step


def export_run_transformers(workdir, out: str, step=None) -> int:
  """Writes checkpoint `step` (default: the latest) of a CLIP-layout run as transformers
  checkpoints in the local directory `out`; returns the step."""
  from stbir_jax.convert import to_transformers  # pylint: disable=g-import-not-at-top
  _check_local(out)
  _, config = run_config(workdir)
  step, params = latest_params(workdir, step)
  to_transformers.write_clip(config, params, out)
  return step


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  if f.format == 'transformers':
    step = export_run_transformers(f.workdir, f.out, f.step)
  else:
    step = export_run(f.workdir, f.out, f.step)
  print(f'Exported step {step} of {f.workdir} to {f.out} (format {f.format})')


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'Training run directory (a local path or gs:// URL).')
  flags.DEFINE_string('out', None, 'Local export directory to write.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_enum('format', 'stbir', FORMATS, 'stbir: jax.export encoders + params (loaded by '
                    'stbir_jax.load_exported); transformers: CLIPModel + sketch '
                    'CLIPVisionModelWithProjection directories (CLIP-layout runs).')
  flags.mark_flags_as_required(['workdir', 'out'])
  app.run(main)
