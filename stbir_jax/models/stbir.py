"""The STBIR model: sketch (+ text) queries and photo gallery items in one embedding space.

  model = STBIR.from_config(config)             # = STBIR(config.model, init_temperature=...)
  variables = model.init(key, batch)            # batch: image, sketch, text_ids, text_mask,
                                                #        has_sketch, has_text
  out = model.apply(variables, batch)           # dict(query (B, D), gallery (B, D), logit_scale
                                                #      [, logit_bias with init_logit_bias])
  out = model.apply(variables, batch, single_modality=True)   # + query_sketch, query_text
  q = model.apply(variables, sketch, text_ids, text_mask, has_sketch, has_text,
                  method=STBIR.encode_query)    # (B, D), L2-normalised; runs sketch/text/fusion
  g = model.apply(variables, image, method=STBIR.encode_gallery)   # (B, D); runs photo only
  p = model.apply(variables, ids, mask, method=STBIR.encode_text)  # (B, D); runs text only

Inputs: image uint8 (B, R, R, 3); sketch uint8 (B, R, R) stroke-order map (0 = background);
text_ids int32 (B, L); text_mask (B, L) (1 = real token); has_sketch, has_text bool (B,).
A sketch is binarised (map > 0) and drawn dark on white, replicated to 3 channels and
normalised exactly like a photo, so one pretrained image tower can serve both sides. Pixel
statistics follow the tower kind (PIXEL_STATS): CLIP's for ViTs, ImageNet's for ResNets (the HF
microsoft/resnet-* preprocessors'), mean 0.5 / std 0.5 for SigLIP (its image processor's).

Parameter tree (top level is exactly stages.MODEL_GROUPS, so stages freeze whole groups):

  sketch/backbone/...     image tower (resnet.py / vit.py layout)
  [sketch/aligner/...     with config.model.sketch_align: the spatial transformer that warps
                          each sketch before its tower (aligner.py); a run without it starts
                          one with a fresh, identity aligner (train.init_from)]
  sketch/proj/kernel      (tower dim, D), no bias (like CLIP's visual_projection); D/2 with a
                          split fusion ('concat': query = [sketch half; text half], the photo's
                          embedding likewise, each half unit-normalised)
  photo/backbone/..., photo/proj/kernel
                          [+ photo/text_backbone/..., photo/text_proj/kernel: with
                          fusion.photo_towers = 2, the text half's own tower, built from
                          config.model.photo_text where the config has it (e.g. a cheaper
                          tower for colour and material), else from config.model.photo;
                          proj then D/2]
  text/backbone/...       text tower (text.py layout)
  text/proj/kernel        (text hidden, D), no bias (like CLIP's text_projection); D/2 with a
                          split fusion
  fusion/...              fusion.py layout (per fusion kind)
  temperature/log_scale   scalar, init log(1 / init_temperature);
                          logit_scale = min(exp(log_scale), 100)
  temperature/bias        scalar, init init_logit_bias; only when init_logit_bias is set (the
                          sigmoid loss's learnable bias, losses.sigmoid)

Tower config kinds (config.model.{sketch,photo}.kind): 'resnet' (depth, width, pool: 'gap' |
'flatten'; optional `norm`: 'group' default | 'affine', optional `stem_pool`: True default,
optional `head_width`: 0 default, a 1x1 expansion before the 'gap' pool),
'vit' (HF ViTModel layout), 'clip_vit' (HF CLIPVisionModel layout), 'siglip_vit' (HF
SiglipVisionModel layout, pool 'map' | 'gap'); the ViTs read patch_size, hidden, layers, heads,
mlp_dim, pool. config.model.text.kind: 'bert' | 'clip' | 'siglip' (vocab_size, hidden, layers,
heads, mlp_dim, pool; optional `max_positions`; siglip: optional `projection_size`). The `init` keys
are for the weight converters and are not read here.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from stbir_jax import stages
from stbir_jax.models import aligner, canonical, layers, resnet, vit
from stbir_jax.models import fusion as fusion_lib
from stbir_jax.models import text as text_lib

IMAGE_KINDS = ('resnet', 'vit', 'clip_vit', 'siglip_vit')
VIT_VARIANTS = {'vit': 'vit', 'clip_vit': 'clip', 'siglip_vit': 'siglip'}   # kind -> vit.ViT
CLIP_STATS = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIGLIP_STATS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
PIXEL_STATS = {'resnet': IMAGENET_STATS, 'vit': CLIP_STATS, 'clip_vit': CLIP_STATS,
               'siglip_vit': SIGLIP_STATS}
MAX_LOGIT_SCALE = 100.0


def l2_normalize(x):
  x = x.astype(jnp.float32)
  return x * jnp.reciprocal(jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6))


def normalize_pixels(images01, kind: str):
  """float images in [0, 1] (B, H, W, 3) -> normalised with the tower kind's mean/std."""
  mean, std = (jnp.asarray(v, jnp.float32) for v in PIXEL_STATS[kind])
  return (images01 - mean) / std


def sketch_to_image(sketch):
  """uint8 stroke-order map (B, R, R) -> float (B, R, R, 3) in [0, 1]: dark strokes on white."""
  white = jnp.where(sketch > 0, 0.0, 1.0).astype(jnp.float32)
  return jnp.repeat(white[..., None], 3, axis=-1)


def centre_sketch(sketch):
  """uint8 stroke-order maps (B, R, R) -> the same strokes moved by a whole number of pixels so
  that their ink centroid is the image centre (what leaves the image is dropped); blank ones
  unchanged. A sketch drawn anywhere in the frame then reaches the tower in one place."""

  def centre_one(s):
    r = s.shape[-1]
    ink = (s > 0).astype(jnp.float32)
    count = jnp.sum(ink)
    coords = jnp.arange(r, dtype=jnp.float32)
    # A blank sketch's "centroid" is the image centre: it stays where it is.
    centroid = lambda profile: jnp.where(count > 0, profile @ coords / jnp.maximum(count, 1.0),
                                         (r - 1) / 2.0)
    return canonical.move_to_centre(s, centroid(jnp.sum(ink, 1)), centroid(jnp.sum(ink, 0)),
                                    edge=False)

  return jax.vmap(centre_one)(sketch)


def image_tower(cfg, remat: str, dtype, where: str, name: str = 'backbone') -> nn.Module:
  """The backbone module of an image tower config (config.model.sketch / .photo)."""
  layers.check_choice(f'{where}.kind', cfg.kind, IMAGE_KINDS)
  if cfg.kind == 'resnet':
    return resnet.ResNet(depth=cfg.depth, width=cfg.width, norm=layers.option(cfg, 'norm', 'group'),
                         stem_pool=layers.option(cfg, 'stem_pool', True), pool=cfg.pool,
                         head_width=layers.option(cfg, 'head_width', 0), remat=remat,
                         dtype=dtype, name=name)
  return vit.ViT(variant=VIT_VARIANTS[cfg.kind], patch_size=cfg.patch_size,
                 hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, mlp_dim=cfg.mlp_dim,
                 pool=cfg.pool, remat=remat, dtype=dtype, name=name)


class ImageEncoder(nn.Module):
  """An image tower plus its projection to embed_dim: (emb (B, D), tokens (B, N, C)).

  towers = 2 (the photo side with config.model.fusion.photo_towers = 2): a second tower,
  text_backbone/text_proj, fills the text half of a split embedding, so shape and appearance do
  not share one small tower's features; emb is then (B, 2 D), tokens the first tower's. That
  tower is built from `text_config` (config.model.photo_text) where given, else from `config`."""
  config: ml_collections.ConfigDict   # config.model.sketch or .photo
  embed_dim: int                      # per tower
  remat: str | bool = 'nothing'   # a layers.REMAT_POLICIES name
  dtype: Any = jnp.float32
  where: str = 'config.model.photo'
  towers: int = 1
  text_config: ml_collections.ConfigDict | None = None   # config.model.photo_text
  align: bool = False   # the sketch side with config.model.sketch_align: aligner/... warps first
  align_retrieval_grad: bool = True   # config.model.sketch_align_learns == 'both'

  @nn.compact
  def __call__(self, images, background=None, shift=None):
    """`background`: the normalised value of an empty pixel (what the aligner fills in);
    `shift`: (B, 2) pixels the aligner moves each map by after its own warp."""
    if shift is not None and not self.align:
      raise ValueError(f'A sketch shift after the aligner was given, but {self.where} has no '
                       'aligner (config.model.sketch_align=False).')
    if self.align:
      moved, warp = aligner.SketchAligner(retrieval_grad=self.align_retrieval_grad,
                                          name='aligner')(images - background, shift)
      self.sow('intermediates', 'warp', warp)   # read by the train step's loss.align_jitter
      images = moved + background
    embs, tokens = [], None
    for prefix in ('', 'text_')[:self.towers]:
      cfg, where = self.config, self.where
      if prefix and self.text_config is not None:
        cfg, where = self.text_config, 'config.model.photo_text'
      pooled, own_tokens = image_tower(cfg, self.remat, self.dtype, where,
                                       name=f'{prefix}backbone')(images)
      tokens = own_tokens if tokens is None else tokens
      embs.append(nn.Dense(self.embed_dim, use_bias=False, dtype=self.dtype,
                           kernel_init=layers.DENSE_INIT, name=f'{prefix}proj')(pooled))
    return jnp.concatenate(embs, axis=-1), tokens


class TextEncoder(nn.Module):
  """The text tower plus its projection: (emb (B, D), tokens (B, L, C), mask (B, L) bool)."""
  config: ml_collections.ConfigDict   # config.model.text
  embed_dim: int
  remat: str | bool = 'nothing'   # a layers.REMAT_POLICIES name
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids, mask):
    c = self.config
    layers.check_choice('config.model.text.kind', c.kind, text_lib.KINDS)
    pooled, tokens, mask = text_lib.TextTransformer(
        kind=c.kind, vocab_size=c.vocab_size, hidden=c.hidden, layers=c.layers, heads=c.heads,
        mlp_dim=c.mlp_dim, pool=c.pool, max_positions=layers.option(c, 'max_positions', 0),
        projection_size=layers.option(c, 'projection_size', 0), remat=self.remat,
        dtype=self.dtype, name='backbone')(ids, mask)
    emb = nn.Dense(self.embed_dim, use_bias=False, dtype=self.dtype,
                   kernel_init=layers.DENSE_INIT, name='proj')(pooled)
    return emb, tokens, mask


class Temperature(nn.Module):
  init_temperature: float = 0.07
  init_logit_bias: float | None = None   # None: no bias parameter (InfoNCE needs none)

  @nn.compact
  def __call__(self):
    """-> logit_scale, or (logit_scale, logit_bias) with init_logit_bias."""
    log_scale = self.param('log_scale', nn.initializers.constant(
        math.log(1.0 / self.init_temperature)), (), jnp.float32)
    scale = jnp.minimum(jnp.exp(log_scale), MAX_LOGIT_SCALE)
    if self.init_logit_bias is None:
      return scale
    return scale, self.param('bias', nn.initializers.constant(self.init_logit_bias), (),
                             jnp.float32)


class STBIR(nn.Module):
  config: ml_collections.ConfigDict   # config.model (nothing else is read)
  init_temperature: float = 0.07
  init_logit_bias: float | None = None   # set for the sigmoid loss (config.loss.kind)

  @classmethod
  def from_config(cls, config) -> 'STBIR':
    """The model of a run config: config.model, with the loss's initial temperature (and, for
    the sigmoid loss, its learnable logit bias)."""
    bias = config.loss.init_logit_bias if config.loss.kind == 'sigmoid' else None
    return cls(config.model, init_temperature=config.loss.init_temperature, init_logit_bias=bias)

  def setup(self):
    c = self.config
    dtype = layers.compute_dtype(c.dtype)
    for side in ('sketch', 'photo'):
      layers.check_choice(f'config.model.{side}.kind', c[side].kind, IMAGE_KINDS)
    remat = layers.remat_policy(c.remat)
    f = c.fusion
    if self.split and c.embed_dim % 2:
      raise ValueError(f'config.model.embed_dim={c.embed_dim}: fusion {f.kind!r} splits the '
                       'embedding into a sketch half and a text half; use an even size.')
    # With a split fusion each query side fills its half of the embedding; the photo fills both.
    side = c.embed_dim // 2 if self.split else c.embed_dim
    photo_towers = layers.option(f, 'photo_towers', 1)
    layers.check_choice('config.model.fusion.photo_towers', photo_towers, (1, 2))
    if photo_towers == 2 and not self.split:
      raise ValueError(f'config.model.fusion.photo_towers=2 needs a split fusion '
                       f'({", ".join(fusion_lib.SPLIT_KINDS)}), not kind {f.kind!r}: the second '
                       'photo tower fills the text half of the embedding.')
    sketch_weight = float(layers.option(f, 'sketch_weight', 0.5))
    if not 0.0 <= sketch_weight <= 1.0 or (sketch_weight != 0.5 and not self.split):
      raise ValueError(f'config.model.fusion.sketch_weight={sketch_weight}: the weight of the '
                       'sketch score in a split fusion query, in [0, 1] (0.5: as trained); only '
                       f'split fusions ({", ".join(fusion_lib.SPLIT_KINDS)}) score the two '
                       f'halves apart, not kind {f.kind!r}.')
    if layers.option(f, 'calibrate', False) and not self.split:
      raise ValueError(f'config.model.fusion.calibrate=True needs a split fusion '
                       f'({", ".join(fusion_lib.SPLIT_KINDS)}), not kind {f.kind!r}: it chooses '
                       'the weight of the sketch score against the text score.')
    photo_text = layers.option(c, 'photo_text', None)
    if photo_text is not None and photo_towers != 2:
      raise ValueError('config.model.photo_text configures the text half\'s own photo tower; set '
                       f'config.model.fusion.photo_towers=2 (now {photo_towers}) or remove it.')
    kw = dict(remat=remat, dtype=dtype)
    self.sketch = ImageEncoder(c.sketch, side, where='config.model.sketch',
                               align=bool(layers.option(c, 'sketch_align', False)),
                               align_retrieval_grad=(layers.option(c, 'sketch_align_learns',
                                                                   'both') == 'both'), **kw)
    self.photo = ImageEncoder(c.photo, c.embed_dim // photo_towers, where='config.model.photo',
                              towers=photo_towers, text_config=photo_text, **kw)
    self.text = TextEncoder(c.text, side, **kw)
    self.fusion = fusion_lib.Fusion(kind=f.kind, embed_dim=c.embed_dim, hidden=f.hidden,
                                    layers=f.layers, heads=f.heads, mlp_dim=f.mlp_dim,
                                    normalize=layers.option(f, 'normalize', False),
                                    sketch_weight=sketch_weight,
                                    remat=remat, dtype=dtype)
    self.temperature = Temperature(self.init_temperature, self.init_logit_bias)

  @property
  def centred_frame(self) -> bool:
    """Whether sketches and photos are moved to one frame (models/canonical.py)."""
    frame = layers.option(self.config, 'canonical_frame', 'none')
    layers.check_choice('config.model.canonical_frame', frame, canonical.FRAMES)
    return frame == 'centre'

  @property
  def split(self) -> bool:
    """Whether embeddings are [sketch half; text half] (fusion.SPLIT_KINDS)."""
    return self.config.fusion.kind in fusion_lib.SPLIT_KINDS

  def encode_query(self, sketch, text_ids, text_mask, has_sketch, has_text):
    """-> (B, D) L2-normalised query embeddings (missing modalities use learned nulls)."""
    return self.encode_queries(sketch, text_ids, text_mask, has_sketch, has_text, False)[0]

  def encode_queries(self, sketch, text_ids, text_mask, has_sketch, has_text, single_modality,
                     sketch_shift=None):
    """The query as given, then (if single_modality) its sketch-only and text-only versions,
    fused from the same tower outputs (the towers run once). `sketch_shift`: (B, 2) pixels each
    sketch moves by after the aligner (training's train.pair_shift_after_align), or None."""
    if layers.option(self.config, 'sketch_centre', False):
      sketch = centre_sketch(sketch)
    if self.centred_frame:
      sketch = canonical.centre_sketches(sketch)
    kind = self.config.sketch.kind
    images = normalize_pixels(sketch_to_image(sketch), kind)
    s_emb, s_tokens = self.sketch(images, background=normalize_pixels(jnp.ones(3), kind),
                                  shift=sketch_shift)
    t_emb, t_tokens, t_mask = self.text(text_ids, text_mask)
    fuse = lambda hs, ht: l2_normalize(self.fusion(s_emb, s_tokens, t_emb, t_tokens, t_mask,
                                                   hs, ht))
    if not single_modality:
      return (fuse(has_sketch, has_text),)
    none = jnp.zeros_like(has_sketch, dtype=bool)
    return fuse(has_sketch, has_text), fuse(has_sketch, none), fuse(none, has_text)

  def encode_gallery(self, image):
    """uint8 (B, R, R, 3) -> (B, D) L2-normalised photo embeddings."""
    if self.centred_frame:
      image = canonical.centre_photos(image)
    images = normalize_pixels(image.astype(jnp.float32) / 255.0, self.config.photo.kind)
    emb, _ = self.photo(images)
    if self.split:   # each half unit-normalised: the sketch and the text score count alike
      half = emb.shape[-1] // 2
      emb = jnp.concatenate([fusion_lib.unit(emb[:, :half]), fusion_lib.unit(emb[:, half:])], -1)
    return l2_normalize(emb)

  def encode_text(self, text_ids, text_mask):
    """-> (B, D) L2-normalised text-tower embeddings (no fusion), e.g. category prototypes;
    with a split fusion, in the text half (the sketch half zero)."""
    emb, _, _ = self.text(text_ids, text_mask)
    if self.split:
      emb = jnp.concatenate([jnp.zeros_like(emb), emb], axis=-1)
    return l2_normalize(emb)

  def logit_scale(self):
    return self.logits()['logit_scale']

  def logits(self):
    """{'logit_scale'[, 'logit_bias']}: what the losses read besides the embeddings."""
    if self.init_logit_bias is None:
      return {'logit_scale': self.temperature()}
    scale, bias = self.temperature()
    return {'logit_scale': scale, 'logit_bias': bias}

  def __call__(self, batch, single_modality: bool = False):
    """query, gallery, logit_scale; with single_modality also query_sketch and query_text,
    the same queries with the text (resp. the sketch) left out."""
    queries = self.encode_queries(batch['sketch'], batch['text_ids'], batch['text_mask'],
                                  batch['has_sketch'], batch['has_text'], single_modality,
                                  batch.get('sketch_shift'))
    out = dict(query=queries[0], gallery=self.encode_gallery(batch['image']), **self.logits())
    if single_modality:
      out.update(query_sketch=queries[1], query_text=queries[2])
    return out


def dummy_batch(config, batch_size: int) -> dict:
  """A batch of zeros with the shapes and dtypes of the pipeline's (config.data sizes): what
  `init` traces and what ahead-of-time compilation lowers against."""
  r, text_len = config.data.resolution, config.data.max_text_len
  return dict(
      image=jnp.zeros((batch_size, r, r, 3), jnp.uint8),
      sketch=jnp.zeros((batch_size, r, r), jnp.uint8),
      text_ids=jnp.zeros((batch_size, text_len), jnp.int32),
      text_mask=jnp.ones((batch_size, text_len), jnp.int32),
      has_sketch=jnp.ones((batch_size,), bool), has_text=jnp.ones((batch_size,), bool),
      category=jnp.zeros((batch_size,), jnp.int32),
      instance=jnp.arange(batch_size, dtype=jnp.int32),
      family=jnp.zeros((batch_size,), jnp.int32))


def model_variables(params) -> dict:
  """The train state's params ({group: pytree}) as `model.apply` takes them: the model's groups
  (stages.MODEL_GROUPS), without the category prototypes the losses hold."""
  return {'params': {k: params[k] for k in stages.MODEL_GROUPS}}
