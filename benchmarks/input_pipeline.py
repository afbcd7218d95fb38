"""Throughput of the training input pipeline alone (no model), in patches per second.

  python -m benchmarks.input_pipeline [--steps 50] [--batch_size 16] [--patch_size 128]

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

`--repeats N` measures every row N times in turn (each loader alone, one after the other).
`--grain` (needs `pip install grain`, a test-only requirement) measures grain's DataLoader beside
each row on the same work: its records are the pipeline's own (step, slot) examples, made by
TrainIterator.make_example (same images, crops and flips per (seed, step, slot)), batched by
grain, once with threads in this process (ReadOptions.num_threads = the pipeline's workers) and
once with worker processes (--grain_workers, default the number of CPUs). Each grain row also says
whether its first batch equals the thread pool's.
"""

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

from configs import default
from esrgan_jax import prepare
from esrgan_jax.data import pipeline
from esrgan_jax.data.images import write_image
from esrgan_jax.runtime import backends


def write_synthetic_2k_folder(directory: str, num_images: int = 8) -> None:
  rng = np.random.default_rng(0)
  height, width = 1356, 2040
  for i in range(num_images):
    coarse = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3))
    smooth = np.kron(coarse, np.ones((16, 16, 1)))[:height, :width]
    image = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    write_image(os.path.join(directory, f"{i:04d}.png"), image)


def open_iterator(data_config, args):
  return pipeline.create_train_iterator(
      data_config, scale=args.scale, global_batch_size=args.batch_size, seed=0,
      process_index=0, process_count=1)


def pipeline_workers(data_config):
  return data_config.num_workers or min(16, os.cpu_count() or 1)  # the pipeline's default


def report(name, setup, elapsed, workers, args, batch, extra=""):
  patches = args.steps * args.batch_size
  cores = min(workers, os.cpu_count() or 1)
  print(f"{name:<52} setup {setup:6.2f} s   {patches / elapsed:8.1f} patches/s   "
        f"{patches / elapsed / cores:7.1f} per core   {args.steps / elapsed:7.2f} batches/s   "
        f"(hr {batch['hr'].shape}){extra}", flush=True)


def measure(name: str, data_config, args):
  """The thread pool's row; returns its first (warm-up) batch, step 0."""
  start = time.perf_counter()
  iterator = open_iterator(data_config, args)
  first = next(iterator)  # Warm-up: starts the worker threads and fills the prefetch queue.
  setup = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(args.steps):
    batch = next(iterator)
  elapsed = time.perf_counter() - start
  iterator.close()
  report(name, setup, elapsed, pipeline_workers(data_config), args, batch)
  return first


class PipelineRecords:
  """A grain data source of the pipeline's examples: with `per_step`, record s is the whole batch
  of step s, otherwise record i is slot i % B of step i // B.

  grain's worker processes each batch their own records (worker w of W reads records w, w + W,
  ...), so for them a record is a step: each batch is then built in one process and equals the
  thread pool's. Picklable: each process opens its own TrainIterator (decoding its own cache, if
  any) on first use and only calls its make_example; its thread pool stays idle.
  """

  def __init__(self, data_config, args, num_steps, per_step):
    self._data_config, self._args, self._per_step = data_config, args, per_step
    self._num_records = num_steps * (1 if per_step else args.batch_size)
    self._lock = threading.Lock()
    self._iterator = None

  def __len__(self):
    return self._num_records

  def __getstate__(self):
    return dict(self.__dict__, _lock=None, _iterator=None)

  def __setstate__(self, state):
    self.__dict__.update(state, _lock=threading.Lock())

  def __getitem__(self, index):
    with self._lock:
      if self._iterator is None:
        self._iterator = open_iterator(self._data_config, self._args)
    if not self._per_step:
      step, slot = divmod(int(index), self._args.batch_size)
      lr, hr = self._iterator.make_example(step, slot)
      return {"lr": lr, "hr": hr}
    examples = [self._iterator.make_example(int(index), slot)
                for slot in range(self._args.batch_size)]
    return {"lr": np.stack([lr for lr, _ in examples]),
            "hr": np.stack([hr for _, hr in examples])}


def grain_loader(data_config, args, num_steps, threads, processes):
  """grain's DataLoader of the batches of steps 0 .. num_steps - 1, in order."""
  import grain  # pylint: disable=g-import-not-at-top
  source = PipelineRecords(data_config, args, num_steps, per_step=bool(processes))
  return grain.DataLoader(
      data_source=source,
      sampler=grain.samplers.IndexSampler(len(source), shuffle=False, num_epochs=1),
      operations=[] if processes else [grain.transforms.Batch(args.batch_size)],
      worker_count=processes, worker_buffer_size=2,
      read_options=grain.ReadOptions(num_threads=threads,
                                     prefetch_buffer_size=2 * args.batch_size))


def measure_grain(name, data_config, args, threads, processes, reference):
  """grain's DataLoader on the same examples: `threads` reader threads in this process, or
  `processes` worker processes (one reader thread each) building whole batches."""
  start = time.perf_counter()
  iterator = iter(grain_loader(data_config, args, args.steps + 1, threads, processes))
  first = next(iterator)
  setup = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(args.steps):
    batch = next(iterator)
  elapsed = time.perf_counter() - start
  del iterator
  same = all(np.array_equal(first[k], reference[k]) for k in ("lr", "hr"))
  report(name, setup, elapsed, processes or threads, args, batch,
         f"   same patches as the thread pool: {same}")


def measure_all(name, data_config, args):
  """The row, and with --grain grain's two rows after it; --repeats times, in turn, so that a
  shared machine's drifting load reaches every loader alike."""
  for repeat in range(args.repeats):
    suffix = f" #{repeat + 1}" if args.repeats > 1 else ""
    reference = measure(name + suffix, data_config, args)
    if not args.grain:
      continue
    threads = pipeline_workers(data_config)
    measure_grain(f"  grain DataLoader, {threads} threads{suffix}", data_config, args, threads,
                  0, reference)
    processes = args.grain_workers or os.cpu_count() or 1
    measure_grain(f"  grain DataLoader, {processes} worker processes{suffix}", data_config,
                  args, 1, processes, reference)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--patch_size", type=int, default=128)
  parser.add_argument("--scale", type=int, default=4)
  parser.add_argument("--num_workers", type=int, default=0, help="0: the pipeline's default")
  parser.add_argument("--grain", action="store_true",
                      help="also measure grain's DataLoader on the same examples")
  parser.add_argument("--grain_workers", type=int, default=0,
                      help="grain's worker processes; 0: one per CPU")
  parser.add_argument("--repeats", type=int, default=1,
                      help="measure each row (and its grain rows) this many times, in turn")
  parser.add_argument("--rows", default="bundled,cached,folder,prepared",
                      help="subset of bundled,cached,folder,prepared (2K folder cached, decoded "
                      "per use, prepared sub-images)")
  args = parser.parse_args()
  if args.grain:
    try:
      import grain  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      sys.exit("benchmarks/input_pipeline.py: --grain needs the grain package "
               "(pip install -r requirements-dev.txt)")
    from absl import flags  # pylint: disable=g-import-not-at-top
    flags.FLAGS.mark_as_parsed()  # grain reads its absl flags' defaults; this script uses argparse
  backends.start_quietly()  # the pipeline asks JAX for the process index
  print(f"{os.cpu_count()} CPUs; batch {args.batch_size}, HR patch {args.patch_size}, "
        f"x{args.scale}, {args.steps} timed batches", flush=True)

  def config(**fields):
    data_config = default.data_config()
    data_config.update(patch_size=args.patch_size, **fields)
    if args.num_workers:
      data_config.num_workers = args.num_workers
    return data_config

  rows = args.rows.split(",")
  if "bundled" in rows:
    measure_all("bundled photos, cached", config(dataset="bundled"), args)
  if not {"cached", "folder", "prepared"} & set(rows):
    return
  with tempfile.TemporaryDirectory() as directory:
    start = time.perf_counter()
    write_synthetic_2k_folder(directory)
    print(f"(wrote 8 synthetic 2040x1356 PNGs in {time.perf_counter() - start:.1f} s)", flush=True)
    if "cached" in rows:
      measure_all("synthetic 2K folder, cached", config(dataset="folder", hr_dir=directory), args)
    if "folder" in rows:
      measure_all("synthetic 2K folder, decoded per use",
                  config(dataset="folder", hr_dir=directory, cache_decoded=False), args)
    for with_lr in (False, True) if "prepared" in rows else ():
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
        measure_all(f"prepared 480 sub-images ({kind}), per use",
                config(dataset="prepared", prepared_dir=prepared_dir, cache_decoded=False), args)


if __name__ == "__main__":
  main()
