"""What Real-ESRNet's training pairs teach a model that reads them a pixel at a time.

    python -m benchmarks.realworld_tone [--steps 40] [--photos astronaut.png,coffee.png,...]

Draws --steps batches of the Real-ESRNet demo (configs/realesrnet_x4plus.py:demo: its input
pipeline, GT squares of crop_pad_size with the demo's shuffled channels, and the device degradations
of steps 0, 1, ...), then bins every LR pixel and channel by its level and prints, per bin: its
share of the pixels, the share lying in flat GT (the GT under it and its 8 neighbours has a standard
deviation below 2 levels), and the median of target minus LR for the plain GT and for the USM-
sharpened GT (Real-ESRNet's target, the L1 loss's median). The targets are the GT averaged over each
LR pixel's scale x scale block. The same three figures follow for each held-out photo, plain HR
against the degraded LR the demo evaluates on: what a flat sky needs.
--photos: the bundled photos to train on (default: the demo's).
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import demo_check
from configs import realesrnet_x4plus
from esrgan_jax.data import pipeline
from esrgan_jax.data.degradations import degrade_batch, frozen_table, usm_sharp
from esrgan_jax.runtime import backends

BIN = 20  # levels per row
FLAT = 2.0  # levels


def block_means(images: np.ndarray, scale: int) -> np.ndarray:
  """(N, H, W, C) -> (N, H/scale, W/scale, C): the mean of each LR pixel's GT block."""
  n, h, w, c = images.shape
  return images.reshape(n, h // scale, scale, w // scale, scale, c).mean((2, 4))


def flat_mask(gt: np.ndarray, scale: int) -> np.ndarray:
  """Per LR pixel and channel: the GT under it and its 8 neighbours has a standard deviation
  below FLAT levels (a sky with JPEG speckle is flat; an edge or texture is not)."""
  n, h, w, c = gt.shape
  hh, ww = h // scale, w // scale
  blocks = gt.reshape(n, hh, scale, ww, scale, c)
  sums = [np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
          for x in (blocks.sum((2, 4)), (blocks ** 2).sum((2, 4)))]
  total, squares = (sum(x[:, dy:dy + hh, dx:dx + ww] for dy in range(3) for dx in range(3))
                    for x in sums)
  count = 9 * scale * scale
  variance = squares / count - (total / count) ** 2
  return variance < FLAT ** 2


def training_pixels(config, steps: int) -> dict[str, np.ndarray]:
  table = frozen_table(config.degradation)
  scale = config.model.scale
  batch = config.train.batch_size

  @jax.jit
  def pairs(gt, step):
    gt = gt.astype(jnp.float32) / 255.0
    sharp = usm_sharp(gt, **table.usm)
    lr = degrade_batch(config.seed, step, gt, jnp.arange(batch, dtype=jnp.int32), table,
                       sharpened=sharp)
    return lr, sharp

  iterator = pipeline.create_train_iterator(config.data, scale=scale, global_batch_size=batch,
                                            seed=config.seed, process_index=0, process_count=1)
  columns = {"lr": [], "gt": [], "usm": [], "flat": []}
  for step in range(steps):
    gt = next(iterator)["hr"]
    lr, sharp = (np.asarray(x) * 255.0 for x in pairs(gt, step))
    levels = gt.astype(np.float64)
    columns["lr"].append(lr.ravel())
    columns["gt"].append(block_means(levels, scale).ravel())
    columns["usm"].append(block_means(sharp, scale).ravel())
    columns["flat"].append(flat_mask(levels, scale).ravel())
  return {name: np.concatenate(parts) for name, parts in columns.items()}


def held_out_pixels(scale: int) -> dict[str, dict[str, np.ndarray]]:
  result = {}
  for image in demo_check.held_out_images("realworld"):  # the LR the demo evaluates on
    hr = image.hr[None].astype(np.float64)
    result[image.name] = {"lr": image.lr.astype(np.float64).ravel(),
                          "gt": block_means(hr, scale).ravel(),
                          "flat": flat_mask(hr, scale).ravel()}
  return result


def row(pixels: dict[str, np.ndarray], lo: int, targets: tuple[str, ...]) -> str:
  inside = (pixels["lr"] >= lo) & (pixels["lr"] < lo + BIN)
  if inside.sum() < 50:
    return " " * (15 + 8 * len(targets))
  cells = [f"{inside.mean():6.1%}", f"{pixels['flat'][inside].mean():6.0%}"]
  cells += [f"{np.median(pixels[t][inside] - pixels['lr'][inside]):+7.1f}" for t in targets]
  return "  ".join(cells)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--photos", default="", help="comma-separated bundled photo names")
  args = parser.parse_args(argv)
  backends.start_quietly()
  config = realesrnet_x4plus.get_config("demo")
  if args.photos:
    config.data.bundled_photos = tuple(args.photos.split(","))
  print(f"training photos: {', '.join(config.data.bundled_photos)}; {args.steps} batches of "
        f"{config.train.batch_size}")
  train = training_pixels(config, args.steps)
  held_out = held_out_pixels(config.model.scale)
  header = f"{'LR level':9s}  {'train: share':>12s} {'flat':>6s} {'GT-LR':>7s} {'USM-LR':>7s}"
  for name in held_out:
    header += f"  | {name + ': share':>14s} {'flat':>6s} {'HR-LR':>7s}"
  print(header)
  for lo in range(0, 256, BIN):
    line = f"{lo:3d}-{lo + BIN - 1:3d}    " + row(train, lo, ("gt", "usm"))
    for pixels in held_out.values():
      line += "  |  " + row(pixels, lo, ("gt",))
    print(line)
  return 0


if __name__ == "__main__":
  sys.exit(main())
