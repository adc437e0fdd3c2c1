r"""Export a trained run for downstream use (the writer; stbir_jax/exported.py loads it back
without the training code).

  python -m stbir_jax.export --workdir=workdirs/demo_budget --out=exports/demo_budget

writes to --out:
  config.json            the run's full config
  params.safetensors     model parameters, flattened with '/'-joined names
  encode_query.jax       serialized jax.export of encode_query(params, sketch, text_ids,
                         text_mask, has_sketch, has_text), symbolic batch dimension
  encode_gallery.jax     serialized jax.export of encode_gallery(params, image), symbolic batch
  tokenizer/             the tokenizer's files (Hugging Face format)
  model_card.md          what the model is, its training config and measured results
  manifest.json          input shapes and dtypes, file list, versions

`stbir_jax.load_exported(DIR)` (stbir_jax/exported.py) returns an `ExportedModel` whose
`encode_query`, `encode_gallery` and `tokenize` need neither this package's training code nor
its config system: only jax, numpy, safetensors and transformers' tokenizer. The run's config and
checkpoint are read with stbir_jax/run_config.py.

  python -m stbir_jax.export --format=transformers --workdir=workdirs/clip --out=exports/hf

writes the towers of a CLIP-layout run (clip_vit sketch and photo, clip text) for PyTorch:
OUT/ loads with transformers.CLIPModel.from_pretrained (photo + text), OUT/sketch/ with
CLIPVisionModelWithProjection.from_pretrained (stbir_jax/convert/to_transformers.py,
docs/pretrained.md).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import export as jax_export
from safetensors.numpy import save_file

from stbir_jax import cli, exported, paths, run_config
from stbir_jax.convert import to_transformers
from stbir_jax.data.tokenizer import get_tokenizer
from stbir_jax.models.fusion import SPLIT_KINDS
from stbir_jax.models.stbir import STBIR

FORMATS = ('stbir', 'transformers')   # --format; 'stbir' is the jax.export directory above


def _flatten(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}/'))
    else:
      out[f'{prefix}{k}'] = np.asarray(v)
  return out


def export_model(config, params: dict, out: str, *, results_md: str = '',
                 step=None) -> None:
  """Writes the export directory for `params` of the model described by `config`."""
  os.makedirs(out, exist_ok=True)
  model = STBIR.from_config(config)
  res, text_len = config.data.resolution, config.data.max_text_len
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
      params_spec, spec((b, res, res), jnp.uint8), spec((b, text_len), jnp.int32),
      spec((b, text_len), jnp.int32), spec((b,), jnp.bool_), spec((b,), jnp.bool_))
  gallery = jax_export.export(jax.jit(encode_gallery))(
      params_spec, spec((b, res, res, 3), jnp.uint8))
  with open(os.path.join(out, 'encode_query.jax'), 'wb') as f:
    f.write(query.serialize())
  with open(os.path.join(out, 'encode_gallery.jax'), 'wb') as f:
    f.write(gallery.serialize())
  save_file(_flatten(jax.device_get(params)), os.path.join(out, 'params.safetensors'))
  with open(os.path.join(out, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  get_tokenizer(config.data.tokenizer).save(os.path.join(out, 'tokenizer'))
  manifest = dict(resolution=res, max_text_len=text_len, embed_dim=config.model.embed_dim,
                  step=step, jax_version=jax.__version__,
                  files=list(exported.FILES) + ['tokenizer/'],
                  inputs=dict(
                      encode_query=dict(sketch=f'uint8[b,{res},{res}] stroke-order map',
                                        text_ids=f'int32[b,{text_len}]',
                                        text_mask=f'int32[b,{text_len}]',
                                        has_sketch='bool[b]', has_text='bool[b]'),
                      encode_gallery=dict(image=f'uint8[b,{res},{res},3]')))
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
  text_tower = (f'- text tower: {m.text.kind} ({m.text.layers} layers, hidden {m.text.hidden}), '
                f'tokenizer `{config.data.tokenizer}`')
  weight = m.fusion.get('sketch_weight', 0.5)
  fusion = (f'- fusion: {m.fusion.kind}; embedding size {m.embed_dim}; '
            f'input resolution {config.data.resolution} px'
            + (f'; query-time sketch weight {weight} (python -m stbir_jax.calibrate; 0.5: as '
               'trained)' if m.fusion.kind in SPLIT_KINDS else ''))
  return f"""# STBIR model card

A dual encoder for fine-grained image retrieval from a sketch plus a short text
(STBIR, arXiv 2604.15735), trained with stbir_jax (config variant `{config.variant}`, step {step}).

## Model
{towers}
{text_tower}
{fusion}

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


def _check_local(out: str) -> None:
  if paths.is_url(out):
    # The export is read with local-file loaders (safetensors, tokenizers); copy it up afterwards.
    raise exported.ExportError(f'--out={out}: expected a local directory; the export is loaded '
                               'from local files. Copy it to the bucket afterwards (gcloud '
                               'storage cp -r).')


def export_run(workdir, out: str, step=None) -> int:
  """Exports checkpoint `step` (default: the latest) of the run in `workdir` (a local directory
  or a gs:// URL) to the local directory `out`; returns the step."""
  _check_local(out)
  run, config = run_config.load_run(workdir)
  step, params = run_config.latest_params(run, step)
  results_path = run / 'results.md'
  results_md = results_path.read_text() if results_path.exists() else ''
  export_model(config, params, out, results_md=results_md, step=step)
  return step


def export_run_transformers(workdir, out: str, step=None) -> int:
  """Writes checkpoint `step` (default: the latest) of a CLIP-layout run as transformers
  checkpoints in the local directory `out`; returns the step."""
  _check_local(out)
  _, config = run_config.load_run(workdir)
  step, params = run_config.latest_params(workdir, step)
  to_transformers.write_clip(config, params, out)
  return step


# ------------------------------------------------------------------------------------ program

FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.quiet_library_logs()
  if FLAGS.format == 'transformers':
    step = export_run_transformers(FLAGS.workdir, FLAGS.out, FLAGS.step)
  else:
    step = export_run(FLAGS.workdir, FLAGS.out, FLAGS.step)
  print(f'Exported step {step} of {FLAGS.workdir} to {FLAGS.out} (format {FLAGS.format})')


def _define_flags():
  """Defined only when run as a program: tests import the writer next to other programs' flags."""
  flags.DEFINE_string('workdir', None, 'Training run directory (a local path or gs:// URL).')
  flags.DEFINE_string('out', None, 'Local export directory to write.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_enum('format', 'stbir', FORMATS, 'stbir: jax.export encoders + params (loaded by '
                    'stbir_jax.load_exported); transformers: CLIPModel + sketch '
                    'CLIPVisionModelWithProjection directories (CLIP-layout runs).')
  flags.mark_flags_as_required(['workdir', 'out'])


if __name__ == '__main__':
  from stbir_jax import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()   # before JAX starts its CPU threads
  _define_flags()
  app.run(main)
