"""Throughput of the training input pipeline alone (no model), in patches per second.

  python benchmarks/input_pipeline.py [--steps 50] [--batch_size 16] [--patch_size 128]

Measures create_train_iterator on
- the bundled photographs (decoded once, cached),
- a folder of 2K images, cached and decoded on every use (cache_decoded=False). The folder is
  SYNTHETIC: 8 random-textured 2040x1356 PNGs (DIV2K's size) written to a temporary directory,
  since no real 2K dataset can be downloaded here; PNG decoding cost is what matters, and noise
  makes PNGs larger (slower to decode) than photographs of the same size.
- the same folder after `python -m esrgan_jax.prepare` (480x480 sub-images every 240 px, 40 per
  image), as PNG and as raw .npy, without and with LR sub-images (--scale: bicubic made once at
  preparation instead of per patch), decoded (read) on every use: data larger than memory.
Each line gives the set-up time (listing, decoding for the cache) and the steady-state rate after
one warm-up batch, in total and per core (divided by min(workers, CPUs)). A trainer at R steps/s
with global batch B needs R * B patches/s per host divided by the number of hosts.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import default  # pylint: disable=g-import-not-at-top
from esrgan_jax import prepare  # pylint: disable=g-import-not-at-top
from esrgan_jax.data import pipeline  # pylint: disable=g-import-not-at-top
from esrgan_jax.data.images import write_image  # pylint: disable=g-import-not-at-top


def write_synthetic_2k_folder(directory: str, num_images: int = 8) -> None:
  rng = np.random.default_rng(0)
  height, width = 1356, 2040
  for i in range(num_images):
    coarse = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3))
    smooth = np.kron(coarse, np.ones((16, 16, 1)))[:height, :width]
    image = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    write_image(os.path.join(directory, f"{i:04d}.png"), image)


def measure(name: str, data_config, args) -> None:
  start = time.perf_counter()
  iterator = pipeline.create_train_iterator(
      data_config, scale=args.scale, global_batch_size=args.batch_size, seed=0,
      process_index=0, process_count=1)
  next(iterator)  # Warm-up: starts the worker threads and fills the prefetch queue.
  setup = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(args.steps):
    batch = next(iterator)
  elapsed = time.perf_counter() - start
  iterator.close()
  patches = args.steps * args.batch_size
  workers = data_config.num_workers or min(16, os.cpu_count() or 1)  # the pipeline's default
  cores = min(workers, os.cpu_count() or 1)
  print(f"{name:<52} setup {setup:6.2f} s   {patches / elapsed:8.1f} patches/s   "
        f"{patches / elapsed / cores:7.1f} per core   {args.steps / elapsed:7.2f} batches/s   "
        f"(hr {batch['hr'].shape})", flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--patch_size", type=int, default=128)
  parser.add_argument("--scale", type=int, default=4)
  parser.add_argument("--num_workers", type=int, default=0, help="0: the pipeline's default")
  args = parser.parse_args()
  print(f"{os.cpu_count()} CPUs; batch {args.batch_size}, HR patch {args.patch_size}, "
        f"x{args.scale}, {args.steps} timed batches", flush=True)

  def config(**fields):
    data_config = default.data_config()
    data_config.update(patch_size=args.patch_size, **fields)
    if args.num_workers:
      data_config.num_workers = args.num_workers
    return data_config

  measure("bundled photos, cached", config(dataset="bundled"), args)
  with tempfile.TemporaryDirectory() as directory:
    start = time.perf_counter()
    write_synthetic_2k_folder(directory)
    print(f"(wrote 8 synthetic 2040x1356 PNGs in {time.perf_counter() - start:.1f} s)", flush=True)
    measure("synthetic 2K folder, cached", config(dataset="folder", hr_dir=directory), args)
    measure("synthetic 2K folder, decoded per use",
            config(dataset="folder", hr_dir=directory, cache_decoded=False), args)
    for with_lr in (False, True):
      for image_format in prepare.FORMATS:
        kind = f"{image_format}{' + bicubic LR' if with_lr else ''}"
        prepared_dir = os.path.join(directory, f"prepared_{image_format}_{with_lr}")
        start = time.perf_counter()
        manifest = prepare.prepare(directory, prepared_dir, image_format=image_format,
                                   num_workers=args.num_workers,
                                   scale=args.scale if with_lr else None)
        size = sum(os.path.getsize(os.path.join(prepared_dir, f))
                   for f in manifest["files"] + manifest.get("lr_files", []))
        print(f"(prepared {len(manifest['files'])} sub-images, {kind}, {size / 2**20:.0f} MiB, "
              f"in {time.perf_counter() - start:.1f} s)", flush=True)
        measure(f"prepared 480 sub-images ({kind}), per use",
                config(dataset="prepared", prepared_dir=prepared_dir, cache_decoded=False), args)


if __name__ == "__main__":
  main()
