"""Shared pieces of the benchmark scripts: machine facts, load gating, interleaved timing,
the benchmark model configurations, our jitted step/encoder and the PyTorch peer built to match.

Not a test and not part of the library. Every script runs as
  /work/venv/bin/python benchmarks/<script>.py [--quick]
from the repository root and writes benchmarks/results/<script>.json.
"""

import json
import os
import platform
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')

# malloc as every stbir_jax program sets it (stbir_jax/host_memory.py), before JAX starts. It is
# process-wide, so ours and the peer in the same process run with it alike;
# STBIR_HOST_MALLOC=system measures without it.
from stbir_jax import host_memory  # noqa: E402  # pylint: disable=g-import-not-at-top

HOST_MALLOC_REUSE = host_memory.keep_freed_memory()
TORCH_THREADS = 2

# name -> model sizes. `small` is a few-second CPU step; `vits16` is ViT-S/16 at 224 with a
# CLIP text tower of the same width/depth (the CLIP-style "matching size").
SIZES = {
    'small': dict(image=64, patch=8, hidden=192, layers=4, heads=3, mlp=768,
                  t_hidden=192, t_layers=4, t_heads=3, t_mlp=768, embed=256, text_len=32,
                  batch=32),
    'vits16': dict(image=224, patch=16, hidden=384, layers=12, heads=6, mlp=1536,
                   t_hidden=384, t_layers=12, t_heads=6, t_mlp=1536, embed=512, text_len=32,
                   batch=16),
}
VOCAB = 49408
EOS = 49407


# ------------------------------------------------------------------------------------ machine


def machine() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  model = ''
  with open('/proc/cpuinfo') as f:
    for line in f:
      if line.startswith('model name'):
        model = line.split(':', 1)[1].strip()
        break
  info = dict(nproc=os.cpu_count(), cpu_model=model, cpu_flags=cpu_flags(),
              platform=platform.platform(),
              python=platform.python_version(), jax=jax.__version__,
              jax_backend=jax.default_backend(), xla_flags=os.environ.get('XLA_FLAGS', ''),
              host_malloc_reuse=HOST_MALLOC_REUSE)
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    info.update(torch=torch.__version__, transformers=transformers.__version__,
                torch_threads=torch.get_num_threads(),
                torch_interop_threads=torch.get_num_interop_threads())
  except ImportError:
    pass
  return info


def loadavg() -> list:
  return [round(x, 2) for x in os.getloadavg()]


# Samples are kept only when other processes used at most this many cores while they ran.
QUIET_FOREIGN_CORES = 0.25
_ISA_FLAGS = ('avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni',
              'avx512_bf16', 'avx512_fp16', 'amx_bf16', 'amx_int8', 'amx_tile')


def cpu_flags() -> list:
  """The instruction-set flags that decide matmul speed (AVX-512, bf16, AMX), from cpuinfo."""
  with open('/proc/cpuinfo') as f:
    for line in f:
      if line.startswith('flags'):
        have = set(line.split(':', 1)[1].split())
        return [flag for flag in _ISA_FLAGS if flag in have]
  return []


def cpu_seconds() -> tuple:
  """(wall clock, seconds every CPU of the machine was busy incl. steal, seconds this process
  used), from /proc/stat and os.times()."""
  with open('/proc/stat') as f:
    fields = [int(x) for x in f.readline().split()[1:]]
  # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
  busy = sum(fields[:8]) - fields[3] - fields[4]
  own = os.times()
  return time.perf_counter(), busy / os.sysconf('SC_CLK_TCK'), own.user + own.system


class ForeignCpu:
  """Cores' worth of CPU that other processes (and the hypervisor's steal) used while the block
  ran: machine busy time minus this process's own, over wall time. Unlike the load average, which
  lags by a minute and counts this process's own threads, it says whether this sample shared
  the machine. `read` is cpu_seconds (a fake in tests)."""

  def __init__(self, read=None):
    self._read = read or cpu_seconds

  def __enter__(self):
    self._start = self._read()
    return self

  def __exit__(self, *exc):
    (wall0, busy0, own0), (wall, busy, own) = self._start, self._read()
    self.cores = max(0.0, ((busy - busy0) - (own - own0)) / max(wall - wall0, 1e-9))
    return False


def wait_for_quiet(max_wait_s: float = 120.0, window_s: float = 2.0) -> dict:
  """Polls, in windows of `window_s`, until other processes use less than
  QUIET_FOREIGN_CORES or `max_wait_s` passes. Returns what it saw (recorded with the results)."""
  start = time.time()
  while True:
    with ForeignCpu() as foreign:
      time.sleep(window_s)
    if foreign.cores < QUIET_FOREIGN_CORES or time.time() - start >= max_wait_s:
      break
  return dict(load_before_measuring=loadavg(), foreign_cores_before=round(foreign.cores, 3),
              waited_s=round(time.time() - start, 1), quiet=foreign.cores < QUIET_FOREIGN_CORES)


def interleaved(fns: dict, reps: int, warmup: int = 1) -> dict:
  """Times each callable `reps` times, alternating between them (and alternating which goes
  first) so that contention from other jobs hits every contender alike. Each fn must block
  until its work is done. Each sample records the CPU other processes used meanwhile and the
  1-minute load after it; the median is over the quiet samples (foreign CPU at most
  QUIET_FOREIGN_CORES), or over all of them with `all_loaded` set when none was quiet.
  Returns name -> dict(median_s, min_s, samples, foreign_cores, load1, n_quiet, all_loaded)."""
  names = list(fns)
  for _ in range(warmup):
    for n in names:
      fns[n]()
  samples = {n: [] for n in names}
  foreign = {n: [] for n in names}
  load1 = {n: [] for n in names}
  for r in range(reps):
    order = names if r % 2 == 0 else names[::-1]
    for n in order:
      with ForeignCpu() as meter:
        t = time.perf_counter()
        fns[n]()
        samples[n].append(time.perf_counter() - t)
      foreign[n].append(round(meter.cores, 3))
      load1[n].append(round(os.getloadavg()[0], 2))
  out = {}
  for n, s in samples.items():
    quiet = [x for x, f in zip(s, foreign[n], strict=True) if f <= QUIET_FOREIGN_CORES]
    kept = quiet or s
    out[n] = dict(median_s=statistics.median(kept), min_s=min(kept),
                  samples=[round(x, 5) for x in s], foreign_cores=foreign[n], load1=load1[n],
                  n_quiet=len(quiet), all_loaded=not quiet)
  return out


def quiet_samples(timings: dict) -> str:
  """'quiet/all' samples of the least quiet contender of an interleaved() result, for tables."""
  least = min(timings.values(), key=lambda t: t['n_quiet'])
  return f'{least["n_quiet"]}/{len(least["samples"])}'


def write_json(name: str, payload: dict) -> str:
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, f'{name}.json')
  payload = dict(payload, machine=machine(), loadavg_at_end=loadavg(),
                 argv=sys.argv, unix_time=int(time.time()))
  with open(path, 'w') as f:
    json.dump(payload, f, indent=2, default=float)
  return path


def table(rows: list, cols: list) -> str:
  """Plain-text table of dict rows (also valid Markdown)."""
  fmt = lambda v: f'{v:.4g}' if isinstance(v, float) else str(v)
  cells = [[fmt(r.get(c, '')) for c in cols] for r in rows]
  widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
  line = lambda xs: '| ' + ' | '.join(x.ljust(w) for x, w in zip(xs, widths, strict=True)) + ' |'
  out = [line(cols), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
  return '\n'.join(out + [line(x) for x in cells])


# ------------------------------------------------------------------------------------ FLOPs


def peak_matmul_flops(n: int = 2048, reps: int = 5) -> dict:
  """Best-of FLOP/s of an (n, n) @ (n, n) float32 jnp.dot (2 n^3 FLOPs): the MFU's peak."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    dot(a, b).block_until_ready()
    times.append(time.perf_counter() - t)
  return dict(n=n, best_flops_per_s=2 * n**3 / min(times),
              median_flops_per_s=2 * n**3 / float(np.median(times)))


def compiled_flops(jitted, *args) -> float:
  """XLA's cost_analysis FLOPs of one call of `jitted` on `args`."""
  cost = jitted.lower(*args).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost['flops'])


def mfu(flops: float, seconds: float, peak: dict) -> float:
  """Model FLOPs utilisation: `flops` done in `seconds`, as a fraction of the measured peak.
  Both contenders are credited with our FLOP count, so ours / peer = mfu_ours / mfu_peer, and
  1 / mfu_peer is the most any code can lead the peer by while its matmuls run no faster than
  the peak."""
  return flops / seconds / peak['best_flops_per_s']


# ------------------------------------------------------------------------------------ inputs


def host_batch(size: str, batch: int, seed: int = 0) -> dict:
  """Random numpy inputs in our pipeline's format (sketch: stroke-order map, 0 = background;
  texts of random length ending in CLIP's EOS id, padded after it)."""
  s = SIZES[size]
  r, text_len = s['image'], s['text_len']
  rng = np.random.default_rng(seed)
  sketch = rng.integers(0, 20, (batch, r, r)).astype(np.uint8)
  sketch[rng.random((batch, r, r)) < 0.85] = 0                   # mostly background
  lengths = rng.integers(4, text_len + 1, batch)
  ids = rng.integers(1, EOS - 1, (batch, text_len)).astype(np.int32)
  mask = (np.arange(text_len)[None] < lengths[:, None]).astype(np.int32)
  ids[np.arange(batch), lengths - 1] = EOS
  ids = ids * mask
  return dict(image=rng.integers(0, 256, (batch, r, r, 3)).astype(np.uint8), sketch=sketch,
              text_ids=ids, text_mask=mask, has_sketch=np.ones(batch, bool),
              has_text=np.ones(batch, bool), category=np.zeros(batch, np.int32),
              instance=np.arange(batch, dtype=np.int32), family=np.zeros(batch, np.int32))


# ------------------------------------------------------------------------------------ ours


def our_config(size: str, batch: int, fusion: str = 'sum'):
  """configs/base.py with ViT (CLIPVisionModel layout) sketch + photo towers, the CLIP text tower,
  `fusion`, one stage training everything with the contrastive loss only, no category
  knowledge, no curriculum, no modality dropout: the work of a plain CLIP-style dual step."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  from configs import base  # pylint: disable=g-import-not-at-top
  from stbir_jax import config_defaults, stages  # pylint: disable=g-import-not-at-top
  s = SIZES[size]
  c = base.get_config('demo')
  c.data.resolution = s['image']
  c.data.max_text_len = s['text_len']
  c.data.family_group = 1
  c.model.embed_dim = s['embed']
  for side in ('sketch', 'photo'):
    c.model[side] = config_defaults.tower('clip_vit', patch_size=s['patch'], hidden=s['hidden'],
                                          layers=s['layers'], heads=s['heads'], mlp_dim=s['mlp'])
  c.model.text = ml_collections.ConfigDict(dict(
      kind='clip', vocab_size=VOCAB, hidden=s['t_hidden'], layers=s['t_layers'],
      heads=s['t_heads'], mlp_dim=s['t_mlp'], pool='eos', init=''))
  c.model.fusion.kind = fusion
  c.category.enabled = False
  c.category.learn_prototypes = False
  c.curriculum.kind = 'none'
  c.train.modality_dropout = 0.0
  c.train.batch_size = batch
  c.train.num_steps = 1000
  c.optim.warmup_steps = 10
  c.optim.weight_decay = 0.05
  c.stages = [stages.joint_stage(stages.MODEL_GROUPS, ['contrastive'], name='all')]
  return c


def our_step(config, degradations: bool = False):
  """(jitted step with donated state, state) for `config`, via the real
  stbir_jax.train_step.make_step_fn.

  degradations=False replaces degradations.degrade by the identity while the step is traced: the
  peer has no equivalent, and with curriculum.kind='none' every query is in the 'clean' bucket
  anyway (the degradation ops still run in the real step; `degradations=True` measures them).
  """
  import jax  # pylint: disable=g-import-not-at-top

  from stbir_jax import degradations as degradation_ops  # pylint: disable=g-import-not-at-top
  from stbir_jax import stages, train_step  # pylint: disable=g-import-not-at-top
  from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top
  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, ['shoe'])
  stage = stages.build_stages(config)[0]
  state = jax.jit(lambda k: train_step.init_state(config, model, constants, k))(
      jax.random.PRNGKey(0))
  fn = train_step.make_step_fn(config, model, stage, constants, config.train.num_steps)
  if not degradations:
    real = degradation_ops.degrade

    def traced(state, batch):
      degradation_ops.degrade = lambda key, batch, *a, **kw: batch
      try:
        return fn(state, batch)
      finally:
        degradation_ops.degrade = real
    return jax.jit(traced, donate_argnums=(0,)), state, model
  return jax.jit(fn, donate_argnums=(0,)), state, model


# configs/base.py variants measured with their real step on a batch of their own pipeline.
DEMO_VARIANTS = ('demo', 'demo_split', 'demo_recipe')


def demo_config(variant: str):
  from configs import base  # pylint: disable=g-import-not-at-top
  return base.get_config(variant)


def demo_step(variant: str, config=None):
  """(jitted step, state, device batch, batch size) of configs/base.py:<variant> (or of `config`,
  one such config changed) as train.py builds it: its last stage, every loss and module, one
  real batch of its Grain pipeline."""
  import jax  # pylint: disable=g-import-not-at-top

  from stbir_jax import stages, train_step  # pylint: disable=g-import-not-at-top
  from stbir_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top
  config = config or demo_config(variant)
  pipeline.ensure_built(config.data)
  host = next(pipeline.train_iterator(config.data, batch_size=config.train.batch_size,
                                      seed=config.train.seed))
  model = stbir.STBIR.from_config(config)
  constants = train_step.make_constants(config, pipeline.category_names(config.data))
  stage = stages.build_stages(config)[-1]
  state = jax.jit(lambda k: train_step.init_state(config, model, constants, k))(
      jax.random.PRNGKey(0))
  fn = train_step.make_step_fn(config, model, stage, constants, config.train.num_steps)
  return jax.jit(fn, donate_argnums=(0,)), state, jax.device_put(host), config.train.batch_size


def our_gallery_encoder(config):
  import jax  # pylint: disable=g-import-not-at-top

  from stbir_jax.models import stbir  # pylint: disable=g-import-not-at-top
  model = stbir.STBIR.from_config(config)
  variables = model.init(jax.random.PRNGKey(0), stbir.dummy_batch(config, 2))
  encode = jax.jit(lambda v, img: model.apply(v, img, method=stbir.STBIR.encode_gallery))
  return encode, variables


# ------------------------------------------------------------------------------------ the peer


def _torch():
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(TORCH_THREADS)
  return torch


def peer_model(size: str):
  """HF CLIPModel (photo vision tower + text tower + projections + logit_scale) plus a second
  CLIPVisionModelWithProjection for sketches, and the 'sum' fusion's two null vectors."""
  torch = _torch()
  from transformers import CLIPConfig, CLIPModel, CLIPVisionModelWithProjection  # pylint: disable=g-import-not-at-top
  s = SIZES[size]
  vision = dict(hidden_size=s['hidden'], intermediate_size=s['mlp'],
                num_hidden_layers=s['layers'], num_attention_heads=s['heads'],
                image_size=s['image'], patch_size=s['patch'], projection_dim=s['embed'])
  text = dict(hidden_size=s['t_hidden'], intermediate_size=s['t_mlp'],
              num_hidden_layers=s['t_layers'], num_attention_heads=s['t_heads'],
              vocab_size=VOCAB, max_position_embeddings=77, eos_token_id=EOS,
              projection_dim=s['embed'])
  cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=s['embed'])
  torch.manual_seed(0)

  class Peer(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.clip = CLIPModel(cfg)
      self.sketch = CLIPVisionModelWithProjection(cfg.vision_config)
      self.null_sketch = torch.nn.Parameter(torch.randn(s['embed']) * 0.02)
      self.null_text = torch.nn.Parameter(torch.randn(s['embed']) * 0.02)
      self.register_buffer('mean', torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(
          1, 3, 1, 1))
      self.register_buffer('std', torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(
          1, 3, 1, 1))

    def encode_gallery(self, image_u8):          # (B, 3, R, R) uint8
      x = (image_u8.float() / 255.0 - self.mean) / self.std
      emb = self.clip.get_image_features(pixel_values=x).pooler_output
      return torch.nn.functional.normalize(emb, dim=-1)

    def encode_query(self, sketch_u8, ids, mask, has_s, has_t):
      white = (sketch_u8 == 0).float()[:, None].expand(-1, 3, -1, -1)
      s_emb = self.sketch(pixel_values=(white - self.mean) / self.std).image_embeds
      t_emb = self.clip.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
      q = (torch.where(has_s[:, None], s_emb, self.null_sketch)
           + torch.where(has_t[:, None], t_emb, self.null_text))
      return torch.nn.functional.normalize(q, dim=-1)

  return Peer()


def peer_batch(host: dict) -> dict:
  torch = _torch()
  return dict(image=torch.from_numpy(np.ascontiguousarray(host['image'].transpose(0, 3, 1, 2))),
              sketch=torch.from_numpy(host['sketch']),
              text_ids=torch.from_numpy(host['text_ids']).long(),
              text_mask=torch.from_numpy(host['text_mask']).long(),
              has_sketch=torch.from_numpy(host['has_sketch']),
              has_text=torch.from_numpy(host['has_text']))


def peer_step(peer, lr=5e-4, clip_norm=1.0, compiled: bool = False):
  """One AdamW step of the symmetric InfoNCE loss, with global-norm clipping like ours.
  compiled=True runs the forward pass and loss through torch.compile (inductor; AOTAutograd
  compiles the backward too), as a PyTorch user after speed would; the optimizer stays eager
  (foreach AdamW)."""
  torch = _torch()
  decay = [p for p in peer.parameters() if p.ndim > 1]
  no_decay = [p for p in peer.parameters() if p.ndim <= 1]
  opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.05),
                           dict(params=no_decay, weight_decay=0.0)],
                          lr=lr, betas=(0.9, 0.98), foreach=True)
  params = list(peer.parameters())

  def loss_fn(b):
    q = peer.encode_query(b['sketch'], b['text_ids'], b['text_mask'], b['has_sketch'],
                          b['has_text'])
    g = peer.encode_gallery(b['image'])
    scale = peer.clip.logit_scale.exp().clamp(max=100.0)
    logits = scale * q @ g.T
    target = torch.arange(q.shape[0])
    return 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                  + torch.nn.functional.cross_entropy(logits.T, target))

  loss_of = torch.compile(loss_fn) if compiled else loss_fn

  def step(b):
    opt.zero_grad(set_to_none=True)
    loss = loss_of(b)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip_norm)
    opt.step()
    return loss.detach()

  return step
