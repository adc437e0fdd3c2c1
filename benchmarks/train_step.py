"""Train step examples/s, ours vs HF PyTorch CLIP built to the same sizes, plus MFU.

  /work/venv/bin/python benchmarks/train_step.py [--quick] [--sizes small,vits16] [--reps N]

Ours: stbir_jax.train_step.make_step_fn (jit, donated state) on ViT sketch + ViT photo towers
(HF CLIPVisionModel layout), the CLIP text tower and 'sum' fusion; contrastive loss only, no
category knowledge, no curriculum degradations (see common.our_step), clip + AdamW-style update.
Peer: common.peer_model / peer_step (CLIPModel + a second CLIP vision tower for sketches), eager
and, as a second row, with its forward and loss through torch.compile (`--no_compiled_peer` skips
it).
Both: float32, the same batch, interleaved repetitions, medians.

MFU: XLA's cost_analysis FLOPs of our compiled step / median step time / the peak matmul FLOP/s
measured here with a large jnp.dot.
"""

import argparse
import time

import jax

import common


def run_size(size: str, batch: int, reps: int, with_degrade: bool,
             compiled_peer: bool = True) -> dict:
  config = common.our_config(size, batch)
  host = common.host_batch(size, batch)
  dev_batch = jax.device_put(host)
  step, state, _ = common.our_step(config)
  t = time.perf_counter()
  flops = common.compiled_flops(step, state, dev_batch)
  holder = {'state': state}

  def ours():
    holder['state'], metrics = step(holder['state'], dev_batch)
    jax.block_until_ready(metrics['loss'])

  ours()  # compile
  compile_s = time.perf_counter() - t

  peer = common.peer_model(size)
  pstep = common.peer_step(peer)
  pbatch = common.peer_batch(host)
  fns = {'ours': ours, 'peer': lambda: pstep(pbatch)}
  peer_compile_s = None
  if compiled_peer:
    # A second model with the same initialisation, so each peer keeps its own optimiser state.
    cstep = common.peer_step(common.peer_model(size), compiled=True)
    t = time.perf_counter()
    cstep(pbatch)   # compiles (inductor, C++ codegen)
    peer_compile_s = time.perf_counter() - t
    fns['peer_compiled'] = lambda: cstep(pbatch)
  if with_degrade:
    dstep, dstate, _ = common.our_step(config, degradations=True)
    dh = {'state': dstate}

    def ours_degrade():
      dh['state'], m = dstep(dh['state'], dev_batch)
      jax.block_until_ready(m['loss'])
    fns['ours_real_step_with_degradations'] = ours_degrade

  load = common.wait_for_quiet()
  timings = common.interleaved(fns, reps=reps, warmup=1)
  res = dict(size=size, batch=batch, sizes=common.SIZES[size], flops_per_step=flops,
             our_compile_s=compile_s, peer_compile_s=peer_compile_s, timings=timings, load=load,
             our_params=sum(x.size for x in jax.tree.leaves(holder['state'].params)),
             peer_params=sum(p.numel() for p in peer.parameters()))
  for name, t in timings.items():
    res[f'{name}_examples_per_s'] = batch / t['median_s']
  res['ratio_ours_over_peer'] = res['ours_examples_per_s'] / res['peer_examples_per_s']
  if compiled_peer:
    res['ratio_ours_over_compiled_peer'] = (res['ours_examples_per_s']
                                            / res['peer_compiled_examples_per_s'])
  return res


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--quick', action='store_true', help='fewer reps, smaller ViT-S batch')
  p.add_argument('--sizes', default='small,vits16')
  p.add_argument('--reps', type=int, default=0)
  p.add_argument('--no_compiled_peer', action='store_true',
                 help='skip the torch.compile peer (its compilation takes minutes)')
  args = p.parse_args()
  common._torch()  # pylint: disable=protected-access
  peak = common.peak_matmul_flops()
  results = []
  for size in args.sizes.split(','):
    batch = common.SIZES[size]['batch']
    if args.quick and size == 'vits16':
      batch = 8
    reps = args.reps or (2 if args.quick else 3 if size == 'vits16' else 7)
    r = run_size(size, batch, reps, with_degrade=(size == 'small'),
                 compiled_peer=not args.no_compiled_peer)
    step_s = r['timings']['ours']['median_s']
    r['achieved_flops_per_s'] = r['flops_per_step'] / step_s
    r['mfu'] = common.mfu(r['flops_per_step'], step_s, peak)
    # The peer does the same model work, so the same FLOP count gives its utilisation.
    r['peer_mfu'] = common.mfu(r['flops_per_step'], r['timings']['peer']['median_s'], peak)
    if 'peer_compiled' in r['timings']:
      r['compiled_peer_mfu'] = common.mfu(r['flops_per_step'],
                                          r['timings']['peer_compiled']['median_s'], peak)
    results.append(r)
    print(f'[{size}] done: ours {r["ours_examples_per_s"]:.2f} ex/s, peer '
          f'{r["peer_examples_per_s"]:.2f} ex/s', flush=True)

  rows = [dict(config=r['size'], batch=r['batch'],
               ours_ex_s=r['ours_examples_per_s'], peer_ex_s=r['peer_examples_per_s'],
               ratio=r['ratio_ours_over_peer'],
               compiled_peer_ex_s=r.get('peer_compiled_examples_per_s', float('nan')),
               ratio_compiled=r.get('ratio_ours_over_compiled_peer', float('nan')),
               ours_step_s=r['timings']['ours']['median_s'],
               peer_step_s=r['timings']['peer']['median_s'],
               load1=r['load']['load_before_measuring'][0],
               quiet=common.quiet_samples(r['timings'])) for r in results]
  print('\nTrain step (median of interleaved reps)')
  print(common.table(rows, list(rows[0])))
  mfu_rows = [dict(config=r['size'], gflop_per_step=r['flops_per_step'] / 1e9,
                   achieved_gflop_s=r['achieved_flops_per_s'] / 1e9,
                   peak_gflop_s=peak['best_flops_per_s'] / 1e9, mfu=r['mfu'],
                   peer_mfu=r['peer_mfu'],
                   compiled_peer_mfu=r.get('compiled_peer_mfu', float('nan')),
                   ceiling_over_peer=1 / r['peer_mfu']) for r in results]
  print('\nMFU (XLA cost_analysis FLOPs / step time / measured jnp.dot peak; ceiling_over_peer: '
        'ours / peer if our step ran at that peak)')
  print(common.table(mfu_rows, list(mfu_rows[0])))
  for r in results:
    if 'ours_real_step_with_degradations_examples_per_s' in r:
      print(f'\n[{r["size"]}] real step incl. curriculum degradations: '
            f'{r["ours_real_step_with_degradations_examples_per_s"]:.2f} ex/s')
  tag = '_'.join(r['size'] for r in results)
  path = common.write_json(f'train_step_{tag}', dict(peak_matmul=peak, results=results,
                                                     table=rows, mfu_table=mfu_rows))
  common.write_json(f'mfu_{tag}', dict(peak_matmul=peak, mfu_table=mfu_rows))
  print('wrote', path)


if __name__ == '__main__':
  main()
