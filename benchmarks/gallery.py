"""Gallery encoding images/s: ours (jit STBIR.encode_gallery) vs the HF PyTorch peer
(torch.inference_mode, CLIPModel.get_image_features), same sizes, float32, interleaved reps.

  /work/venv/bin/python benchmarks/gallery.py [--quick]

Both sides: uint8 pixels -> /255 -> CLIP mean/std -> vision tower -> projection -> L2 norm.
MFU as in train_step.py: XLA's cost_analysis FLOPs of our encoder, credited to both sides, over
the measured jnp.dot peak; `ceiling` = 1 / peer MFU, the most ours could lead by at that peak.
"""

import argparse
import time

import jax

import common


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--quick', action='store_true')
  p.add_argument('--sizes', default='small,vits16')
  args = p.parse_args()
  torch = common._torch()  # pylint: disable=protected-access
  peak = common.peak_matmul_flops()
  results = []
  for size in args.sizes.split(','):
    batch = {'small': 128, 'vits16': 16 if args.quick else 32}[size]
    reps = 3 if args.quick else 5
    config = common.our_config(size, batch)
    host = common.host_batch(size, batch)
    encode, variables = common.our_gallery_encoder(config)
    img = jax.device_put(host['image'])
    t = time.perf_counter()
    encode(variables, img).block_until_ready()
    compile_s = time.perf_counter() - t
    flops = common.compiled_flops(encode, variables, img)
    peer = common.peer_model(size).eval()
    pimg = common.peer_batch(host)['image']

    # peer_fn and the lambda read this iteration's models and batch: interleaved() calls them
    # before the next iteration rebinds them.
    def peer_fn():
      with torch.inference_mode():
        peer.encode_gallery(pimg)  # noqa: B023  (called in this iteration)

    load = common.wait_for_quiet()
    ours_fn = lambda: encode(variables, img).block_until_ready()  # noqa: B023  (same)
    timings = common.interleaved({'ours': ours_fn, 'peer': peer_fn}, reps=reps)
    r = dict(size=size, batch=batch, compile_s=compile_s, timings=timings, load=load,
             ours_images_per_s=batch / timings['ours']['median_s'],
             peer_images_per_s=batch / timings['peer']['median_s'])
    r['ratio_ours_over_peer'] = r['ours_images_per_s'] / r['peer_images_per_s']
    r['flops_per_batch'] = flops
    r['mfu'] = common.mfu(flops, timings['ours']['median_s'], peak)
    r['peer_mfu'] = common.mfu(flops, timings['peer']['median_s'], peak)
    results.append(r)
  rows = [dict(config=r['size'], batch=r['batch'], ours_img_s=r['ours_images_per_s'],
               peer_img_s=r['peer_images_per_s'], ratio=r['ratio_ours_over_peer'],
               gflop_per_image=r['flops_per_batch'] / r['batch'] / 1e9, mfu=r['mfu'],
               peer_mfu=r['peer_mfu'], ceiling=1 / r['peer_mfu'],
               load1=r['load']['load_before_measuring'][0],
               quiet=common.quiet_samples(r['timings'])) for r in results]
  print('Gallery encoding (inference, median of interleaved reps)')
  print(common.table(rows, list(rows[0])))
  print('wrote', common.write_json('gallery', dict(peak_matmul=peak, results=results, table=rows)))


if __name__ == '__main__':
  main()
