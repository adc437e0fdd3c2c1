"""Gallery encoding images/s: ours (jit STBIR.encode_gallery) vs the HF PyTorch peer
(torch.inference_mode, CLIPModel.get_image_features), same sizes, float32, interleaved reps.

  /work/venv/bin/python benchmarks/gallery.py [--quick]

Both sides: uint8 pixels -> /255 -> CLIP mean/std -> vision tower -> projection -> L2 norm.
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
    results.append(r)
  rows = [dict(config=r['size'], batch=r['batch'], ours_img_s=r['ours_images_per_s'],
               peer_img_s=r['peer_images_per_s'], ratio=r['ratio_ours_over_peer'],
               load1=r['load']['load_before_measuring'][0],
               quiet=common.quiet_samples(r['timings'])) for r in results]
  print('Gallery encoding (inference, median of interleaved reps)')
  print(common.table(rows, list(rows[0])))
  print('wrote', common.write_json('gallery', dict(results=results, table=rows)))


if __name__ == '__main__':
  main()
