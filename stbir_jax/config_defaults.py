"""Every default of a run: `get_config()` is the full run's config, whose keys every variant
(configs/base.py) shares. Config checks read it (config_checks.check_known_keys: a key it lacks
is a typo), so it lives in the package; configs/base.py builds its variants on it.

The full run: ViT-B/16 towers started from CLIP at 224 px, all three STBIR-Synth
configurations, global batch 1024, the paper's three alignment stages.
"""

import ml_collections

from stbir_jax import eval_sections, stages
from stbir_jax.data import names


def tower(kind, **kw):
  """Image tower (sketch or photo side). ResNet reads depth, width, norm, stem_pool, pool
  ('gap' | 'flatten') and head_width (> 0: a 1x1 expansion before 'gap'); ViT reads
  patch_size, hidden, layers, heads, mlp_dim and pool ('cls' | 'gap')."""
  spec = dict(kind=kind, depth=18, width=64, norm='group', stem_pool=True, head_width=0,
              patch_size=16, hidden=768, layers=12, heads=12, mlp_dim=3072,
              pool='gap' if kind == 'resnet' else 'cls', init='')
  spec.update(kw)
  return ml_collections.ConfigDict(spec)


def _buckets():
  """Query-quality buckets, clean to severe, then missing modalities."""

  def bucket(name, drop=0.0, keep=1.0, jitter=0.0, thick=0, noise=0, words=0.0, vague=False,
             no_sketch=False, no_text=False, level=0):
    return ml_collections.ConfigDict(dict(
        name=name, level=level,
        stroke_dropout=drop,      # probability of removing each stroke
        keep_fraction=keep,       # partial drawing: keep the first x of the strokes
        jitter=jitter,            # max affine jitter, fraction of the image size
        thickness=thick,          # extra dilation radius in pixels (0 = none)
        noise_strokes=noise,      # spurious random strokes added
        word_dropout=words,       # probability of removing each word
        vague_text=vague,         # remove attribute words (colours, patterns, materials)
        missing_sketch=no_sketch,
        missing_text=no_text))

  return [
      bucket('clean', level=0),
      bucket('mild', drop=0.1, keep=0.9, jitter=0.03, noise=1, words=0.1, level=1),
      bucket('moderate', drop=0.25, keep=0.75, jitter=0.06, thick=1, noise=2, words=0.25,
             level=2),
      bucket('severe', drop=0.4, keep=0.5, jitter=0.1, thick=1, noise=4, words=0.4, vague=True,
             level=3),
      bucket('no_sketch', no_sketch=True, level=2),
      bucket('no_text', no_text=True, level=2),
  ]


def get_config():
  """The full run's config: every key a config may hold, at its default."""
  c = ml_collections.ConfigDict()
  c.variant = 'full'                      # configs/base.py:get_config sets its variant's name

  # ---------------------------------------------------------------- data
  c.data = ml_collections.ConfigDict()
  c.data.name = names.SYNTH               # 'stbir_synth' or a prepared dataset (docs/datasets.md)
  c.data.configs = ['shoes', 'chairs', 'daily']
  c.data.data_dir = ''                    # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
  c.data.resolution = 224                 # stored and model input size, pixels
  c.data.max_text_len = 32
  c.data.tokenizer = 'openai/clip-vit-base-patch16'  # must match model.text.init; 'bert_uncased'
                                          # is the bundled (offline) BERT vocab
  c.data.num_workers = 0                  # Grain worker processes (0 = in-process)
  c.data.family_group = 16                # instances of one family kept together in a batch
  c.data.on_bad_record = 'error'          # a corrupt train record: 'error' (names it) | 'skip'
  c.data.synth = ml_collections.ConfigDict(dict(
      train_families=256, validation_families=16, test_families=64,
      structural_variants=4, appearance_variants=4,
      sketches_per_instance=3, texts_per_instance=3, seed=0))

  # ---------------------------------------------------------------- model
  c.model = ml_collections.ConfigDict()
  c.model.embed_dim = 512                 # = CLIP ViT-B/16 projection_dim, so its projections load
  c.model.dtype = 'float32'               # compute dtype: 'float32' or 'bfloat16'
  # The full run starts every tower from CLIP ViT-B/16 (photo, sketch and text; the sketch tower
  # sees strokes drawn dark on white, so an image tower transfers). Fetched from the hub when
  # online, or give a local directory / a converted directory (docs/pretrained.md).
  clip = 'openai/clip-vit-base-patch16'
  c.model.sketch = tower('clip_vit', patch_size=16, hidden=768, layers=12, heads=12,
                          mlp_dim=3072, init=clip)
  c.model.photo = tower('clip_vit', patch_size=16, hidden=768, layers=12, heads=12,
                         mlp_dim=3072, init=clip)
  c.model.text = ml_collections.ConfigDict(dict(
      kind='clip', vocab_size=49408, hidden=512, layers=12, heads=8, mlp_dim=2048,
      pool='eos', init=clip))
  # normalize: sum/gated fuse unit-norm sides times learned per-modality scales (fusion.py).
  # photo_towers: 2 gives the text half of a split fusion ('concat') its own photo tower.
  # sketch_weight: a split fusion's query-time weight of the sketch score (0.5: as trained);
  # python -m stbir_jax.calibrate chooses it on validation and records it in the run;
  # calibrate=True does that at the end of training, before the final evaluation.
  c.model.fusion = ml_collections.ConfigDict(dict(
      kind='cross_attention', hidden=512, layers=2, heads=8, mlp_dim=2048, normalize=True,
      photo_towers=1, sketch_weight=0.5, calibrate=False))
  c.model.remat = 'nothing'               # activations recomputed in the backward pass: 'nothing' |
                                          # 'dots_saveable' | 'full' (models/layers.py)
  c.model.sketch_centre = False           # shift each sketch's ink centroid to the image centre
                                          # before its tower (models/stbir.py centre_sketch)
  c.model.canonical_frame = 'none'        # 'centre': every sketch and photo moved to one frame
                                          # before its tower (models/canonical.py)
  c.model.sketch_align = False            # a learned warp of each sketch before its tower
                                          # (models/aligner.py, a spatial transformer)
  c.model.sketch_align_learns = 'both'    # what trains it: 'both' (the retrieval loss through
                                          # the warp and loss.align_jitter) | 'jitter' (only
                                          # loss.align_jitter; the warp reaches the towers as
                                          # a constant)

  # ---------------------------------------------------------------- losses
  c.loss = ml_collections.ConfigDict(dict(
      contrastive=1.0, triplet=0.5, triplet_margin=0.2, init_temperature=0.07,
      learn_temperature=True, prototype=0.5,
      single_modality=1.0))               # sketch-only and text-only InfoNCE, in stages naming it
  c.loss.kind = 'info_nce'                # contrastive and single_modality terms: 'info_nce' |
                                          # 'sigmoid' (SigLIP's, with a learnable logit bias)
  c.loss.init_logit_bias = -10.0          # the sigmoid loss's bias at step 0 (SigLIP's value)
  c.loss.triplet_mining = 'hard'          # negatives of the triplet term: 'hard' (the hardest in
                                          # the batch) | 'all' (their mean; losses.py)
  c.loss.triplet_queries = 'all'          # anchors of the triplet term: 'all' | 'clean' (only
                                          # queries neither degraded nor modality-dropped)
  c.loss.consistency = 0.0                # weight of 1 - cos(degraded sketch's sketch-only query,
                                          # the same sketch's clean one, held fixed); 0 = off
  c.loss.sketch_structure_only = False    # True: the sketch-only term does not count a photo of
                                          # the drawn structure (an appearance twin) as a
                                          # negative, since the text names the appearance
                                          # (STBIR-Synth only: train_step.structure_ids)
  c.loss.gallery_from_clean_queries = False  # True: a degraded query's contrastive and
                                          # single-modality pairs train its query towers but
                                          # send the gallery side no gradient (losses.pair_scores)
  c.loss.clean_pairs = 0.0                # weight of the contrastive and single-modality terms of
                                          # each query as drawn, before the curriculum and the
                                          # modality dropout degrade it, scored beside the
                                          # degraded one: clean queries train every step whatever
                                          # share is degraded (one more pass of the query
                                          # towers); 0 = off
  c.loss.distill = 0.0                    # weight of the distillation of each query's clean self
                                          # (as drawn, before the curriculum and the modality
                                          # dropout) into it: KL between their softmaxes over
                                          # the batch's photos, the clean one held fixed
                                          # (losses.distill); 0 = off
  c.loss.align_jitter = 0.0               # weight of the sketch aligner's regression on the warp
                                          # that undoes each training sketch's jitter
                                          # (losses.warp_regression; needs model.sketch_align)
  c.loss.distill_temperature = 1.0        # T of that KL: both softmaxes at logit_scale / T

  # ---------------------------------------------------------------- STBIR module 1: curriculum
  c.curriculum = ml_collections.ConfigDict()
  c.curriculum.kind = 'self_paced'        # 'none' | 'uniform' | 'competence' | 'self_paced'
  c.curriculum.buckets = _buckets()
  c.curriculum.competence_start = 0.25    # fraction of difficulty admitted at step 0
  c.curriculum.competence_steps = 0       # steps until every bucket is admitted (0 = half the run)
  c.curriculum.ema = 0.9                  # per-bucket running loss decay
  c.curriculum.temperature = 1.0          # softness of loss-following weights
  c.curriculum.min_weight = 0.05          # floor for every admitted bucket
  c.curriculum.clean_share = 0.5          # queries kept clean (all kinds but 'none'); the rest
                                          # follow the kind's weights
  c.curriculum.eval_seed = 1234           # fixed seed for degraded test queries

  # ------------------------------------------------------- STBIR module 2: category knowledge
  c.category = ml_collections.ConfigDict(dict(
      enabled=True, prompt='a photo of a {}', learn_prototypes=True, margin=0.2,
      temperature=0.1, hard_negative_weight=2.0))

  # ---------------------------------------------------------------- training
  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 1024               # global
  c.train.num_steps = 20_000              # split across stages by their fractions
  c.train.seed = 0
  c.train.modality_dropout = 0.2          # per query: drop sketch or text with this probability
  c.train.pair_shift = 0.0                # move each training photo and its sketch together by
                                          # up to this fraction of the image (0 = off)
  c.train.pair_shift_after_align = False  # with model.sketch_align: the sketch's share of the
                                          # pair shift is applied after the aligner's warp, so
                                          # the aligner reads each sketch where it was drawn
  c.train.pair_warp = 0.0                 # scale (1 +- f) and rotate (+-f pi) each training photo
                                          # and its sketch together (0 = off)
  c.train.init_from = ''                  # a run (or soup) directory whose params start this run:
                                          # a branch or a fine-tuning with a fresh optimizer
                                          # and step 0; its model config must match
  c.train.init_from_step = -1            # its checkpoint; -1: the latest
  c.train.nan_policy = 'stop'             # 'stop' | 'skip'
  c.train.grad_accum_steps = 1            # micro-batches a step; losses still span the batch
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 3

  c.optim = ml_collections.ConfigDict(dict(
      lr=5e-4, warmup_steps=1000, weight_decay=0.05, clip_norm=1.0, b1=0.9, b2=0.98,
      eps=1e-8,                           # Adam epsilon: update = lr * m / (sqrt(v) + eps)
      schedule='stage'))                  # 'stage': each stage its own warmup and cosine;
                                          # 'run': one over train.num_steps, stages at their
                                          # point of it, a group new in a stage warming up
                                          # (train_step.learning_rate, entering_groups)
  # Learning-rate multiplier per parameter group, e.g. a pretrained tower fine-tuned gently
  # (--config.optim.group_lr_scale.text=0.025) next to towers trained from scratch.
  c.optim.group_lr_scale = ml_collections.ConfigDict(
      {group: 1.0 for group in stages.PARAM_GROUPS})

  c.stages = stages.alignment_stages()

  # ---------------------------------------------------------------- evaluation
  # One section per evaluator that runs, by its name (defaults: eval_sections.SECTION_DEFAULTS;
  # rules: each evaluator's, stbir_jax/evaluate.py): every_steps, batch_size, split, modes,
  # gallery_scope ('all' photos of the split | those of the same 'category'); robustness adds
  # `buckets` (names of curriculum buckets). The full run evaluates retrieval;
  # --config.evals='{}' evaluates nothing.
  c.evals = ml_collections.ConfigDict()
  c.evals.retrieval = eval_sections.default_section('retrieval')

  # ---------------------------------------------------------------- device mesh
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
  return c
