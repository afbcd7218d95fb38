"""Super-resolves image files with a generator checkpoint, tile by tile.

  python -m esrgan_jax.upscale photo.png folder/ -o results/ --checkpoint ckpt/ \
      [--tile 256] [--tile-pad 10] [--outscale 3.5] [--half] [--batch-size 4] [--suffix out]

Every output keeps its input's pixel format: 8-bit stays 8-bit, 16-bit PNG/TIFF stays 16-bit (the
network runs on float either way), grayscale stays grayscale (the gray channel is fed to the RGB
network three times and its output turned back into gray with BT.601 luma weights, as
Real-ESRGAN does), and RGBA stays RGBA. The alpha channel is upscaled separately, by default with
the network itself on alpha copied to three channels, which keeps mask edges as sharp as the
colour edges (Real-ESRGAN's default); `--alpha-upsampler bicubic` uses MATLAB bicubic instead,
which is smoother and cheaper. An alpha channel of one value (an opaque RGBA file) is copied
rather than upscaled, so that it stays exactly that value.

`--outscale` resizes the network's output to ceil(input size * outscale) with MATLAB's bicubic
imresize, the resize the benchmarks' LR images were made with.

Errors are one line each on stderr. An unreadable image is reported and skipped, the other
images are still processed and the exit status is 1; problems found before any work (an
unwritable output folder, a missing input, a checkpoint of another scale) exit with status 2.
"""

import argparse
import functools
import math
import os
import sys
import tempfile
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from esrgan_jax import xla_flags
from esrgan_jax.weights import generator as generator_weights
from esrgan_jax.data import bicubic
from esrgan_jax.data.images import (IMAGE_EXTENSIONS, ImageReadError, ImageWriteError,
                                    list_images, read_image_any, write_image)
from esrgan_jax.tiling import upscale_tiled

# ITU-R BT.601 luma, the weights of cv2's RGB2GRAY that Real-ESRGAN uses to return to gray.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
# Extensions that can hold 16-bit pixels and an alpha channel; others fall back to PNG for them.
HIGH_DEPTH_EXTENSIONS = (".png", ".tif", ".tiff")
ALPHA_EXTENSIONS = (".png", ".tif", ".tiff", ".webp", ".bmp")
# Bytes of float64 scratch memory one strip of the final resize may use.
RESIZE_STRIP_BYTES = 1 << 28


class UsageError(ValueError):
  """A problem found before any image is processed; reported as one line."""


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m esrgan_jax.upscale",
      description="Super-resolve images with an ESRGAN generator checkpoint.")
  parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
  parser.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                      help="folder for the results (created if missing)")
  parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                      help="generator checkpoint (esrgan_jax.convert / interpolate / export)")
  parser.add_argument("--model-scale", type=int, choices=(1, 2, 4),
                      help="refuse a checkpoint of any other scale")
  parser.add_argument("--outscale", type=float,
                      help="final upscaling factor (default: the model's scale)")
  parser.add_argument("--tile", type=int, default=256,
                      help="tile size in input pixels, 0 for whole images (default 256)")
  parser.add_argument("--tile-pad", type=int, default=10,
                      help="context pixels around each tile (default 10)")
  parser.add_argument("--batch-size", type=int, default=4, help="tiles per network call")
  parser.add_argument("--half", action="store_true",
                      help="compute in bfloat16 (for accelerators; slow on CPU)")
  parser.add_argument("--alpha-upsampler", choices=("model", "bicubic"), default="model",
                      help="how an alpha channel is upscaled (default: the network)")
  parser.add_argument("--suffix", default="out",
                      help="appended to output names as NAME_SUFFIX.EXT ('' for none)")
  parser.add_argument("--ext", default="auto",
                      choices=("auto",) + tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS),
                      help="output format (default: the input's, PNG where it cannot hold the "
                      "image's alpha or 16-bit pixels)")
  args = parser.parse_args(argv)
  if args.tile < 0 or args.tile_pad < 0 or args.batch_size < 1:
    parser.error("--tile and --tile-pad must be >= 0 and --batch-size >= 1")
  if args.outscale is not None and not (args.outscale > 0 and math.isfinite(args.outscale)):
    parser.error(f"--outscale must be a positive number, got {args.outscale}")
  return args


def collect_inputs(inputs: Sequence[str]) -> list[str]:
  """The image files named by `inputs`, folders expanded (not recursively), in order."""
  paths = []
  for name in inputs:
    if os.path.isdir(name):
      try:
        paths.extend(list_images(name))
      except ValueError as error:  # A folder without images.
        raise UsageError(str(error)) from None
    elif os.path.exists(name):
      paths.append(name)
    else:
      raise UsageError(f"{name}: no such file or folder")
  return paths


def output_path(input_path: str, outdir: str, suffix: str, ext: str) -> str:
  """OUTDIR/NAME_SUFFIX.EXT; the extension may still change to PNG, see `writable_path`."""
  stem, input_ext = os.path.splitext(os.path.basename(input_path))
  name = f"{stem}_{suffix}" if suffix else stem
  if ext != "auto":
    input_ext = "." + ext
  elif input_ext.lower() not in IMAGE_EXTENSIONS:
    input_ext = ".png"
  return os.path.join(outdir, name + input_ext.lower())


def writable_path(path: str, image: np.ndarray) -> str:
  """`path`, with a .png extension if its format cannot store `image` (alpha or 16-bit)."""
  stem, ext = os.path.splitext(path)
  if image.dtype == np.uint16 and ext not in HIGH_DEPTH_EXTENSIONS:
    return stem + ".png"
  if image.shape[-1] == 4 and ext not in ALPHA_EXTENSIONS:
    return stem + ".png"
  return path


def plan_outputs(paths: Sequence[str], outdir: str, suffix: str, ext: str) -> list[str]:
  """Output paths, refusing any that would overwrite an input or another output."""
  outputs, owners = [], {}
  real_inputs = {os.path.realpath(p) for p in paths}
  for path in paths:
    out = output_path(path, outdir, suffix, ext)
    # Compare without the extension: a fallback to PNG must not collide either.
    key = os.path.splitext(os.path.realpath(out))[0]
    if os.path.realpath(out) in real_inputs:
      raise UsageError(f"{out}: output would overwrite its input; choose another -o or --suffix")
    if key in owners:
      raise UsageError(f"{path} and {owners[key]} would both be written to {out}; "
                       "upscale them into different folders")
    owners[key] = path
    outputs.append(out)
  return outputs


def prepare_output_dir(outdir: str) -> None:
  """Creates `outdir` and proves that a file can be written there, before any work is done."""
  try:
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=outdir):
      pass
  except OSError as error:
    raise UsageError(f"{outdir}: output folder is not writable ({error.strerror or error})") \
        from None


def load_model(checkpoint: str, model_scale: Optional[int], half: bool):
  """The generator module and its params; one-line CheckpointError when they do not fit."""
  params, arch = generator_weights.load_generator(checkpoint)
  if model_scale is not None and arch["scale"] != model_scale:
    raise generator_weights.CheckpointError(
        f"{checkpoint}: checkpoint is a x{arch['scale']} model, but --model-scale "
        f"{model_scale} was given")
  if arch["num_in_ch"] != 3 or arch["num_out_ch"] != 3:
    raise generator_weights.CheckpointError(
        f"{checkpoint}: upscaling needs an RGB generator (3 channels in and out), this one has "
        f"{arch['num_in_ch']} in and {arch['num_out_ch']} out")
  model = generator_weights.generator_from_arch(arch, dtype=jnp.bfloat16 if half else jnp.float32)
  return model, params


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, variables, batch):
  return model.apply(variables, batch).astype(jnp.float32)


def make_apply_fn(model, params) -> Callable[[np.ndarray], jax.Array]:
  """Jitted float32 NHWC -> float32 NHWC. The params are an argument rather than constants baked
  into the program, and equal modules hash alike, so one compilation per batch shape serves every
  checkpoint of one architecture."""
  variables = {"params": jax.device_put(params)}
  return lambda batch: _apply(model, variables, batch)


def imresize_in_strips(image: np.ndarray, output_shape: tuple[int, int]) -> np.ndarray:
  """MATLAB bicubic `imresize` of a float32 HxWxC image, in strips of bounded memory.

  `bicubic.imresize` gathers every tap of a whole dimension at once, which for a 16000x12000
  output needs tens of GB; the same weights applied strip by strip need a few hundred MB.
  """
  scales, out_shape, order = bicubic.resize_plan(image.shape, output_shape=output_shape)
  for dim in order:
    other = 1 - dim
    weights, indices = bicubic.contributions(image.shape[dim], out_shape[dim], scales[dim])
    new_shape = list(image.shape)
    new_shape[dim] = out_shape[dim]
    result = np.empty(new_shape, np.float32)
    bytes_per_line = weights.size * image.shape[2] * 8
    strip = max(1, RESIZE_STRIP_BYTES // bytes_per_line)
    for start in range(0, image.shape[other], strip):
      window = [slice(None)] * 3
      window[other] = slice(start, start + strip)
      moved = np.moveaxis(image[tuple(window)], dim, 0).astype(np.float64)
      resized = np.einsum("ot,otsc->osc", weights, moved[indices])
      result[tuple(window)] = np.moveaxis(resized, 0, dim)
    image = result
  return image


def to_pixels(image: np.ndarray, dtype) -> np.ndarray:
  """Float [0, 1] -> uint8/uint16, rounding half up (the values are >= 0) as MATLAB and BasicSR
  do. In place, because a 16000x12000 float image is 2.3 GB."""
  np.clip(image, 0.0, 1.0, out=image)
  image *= float(np.iinfo(dtype).max)
  image += 0.5
  return np.floor(image, out=image).astype(dtype)


class Upscaler:
  """Turns one image array (uint8/uint16, 1/3/4 channels) into its upscaled twin."""

  def __init__(self, apply_fn, scale: int, outscale: Optional[float], tile: int, tile_pad: int,
               batch_size: int, alpha_upsampler: str = "model"):
    self.apply_fn = apply_fn
    self.scale = scale
    self.outscale = scale if outscale is None else outscale
    self.tile, self.tile_pad, self.batch_size = tile, tile_pad, batch_size
    self.alpha_upsampler = alpha_upsampler

  def _network(self, rgb: np.ndarray, progress=None) -> np.ndarray:
    return upscale_tiled(self.apply_fn, rgb, self.scale, self.tile, self.tile_pad,
                         self.batch_size, progress)

  def _output_size(self, height: int, width: int) -> tuple[int, int]:
    # MATLAB's ceil(in * scale), with the same tolerance for float fuzz as bicubic.imresize.
    return (math.ceil(height * self.outscale - 1e-9), math.ceil(width * self.outscale - 1e-9))

  def _final_size(self, array: np.ndarray, height: int, width: int) -> np.ndarray:
    if self.outscale == self.scale:
      return array
    return imresize_in_strips(array, self._output_size(height, width))

  def _alpha(self, alpha: np.ndarray, progress=None) -> np.ndarray:
    height, width = alpha.shape[:2]
    if alpha.min() == alpha.max():  # Opaque (or uniformly transparent): keep it exact.
      return np.full(self._output_size(height, width) + (1,), alpha.flat[0], np.float32)
    if self.alpha_upsampler == "bicubic":
      return imresize_in_strips(alpha, self._output_size(height, width))
    upscaled = self._network(np.repeat(alpha, 3, axis=-1), progress) @ LUMA_WEIGHTS
    return self._final_size(upscaled[..., None], height, width)

  def __call__(self, image: np.ndarray, progress=None) -> np.ndarray:
    if (image.dtype not in (np.uint8, np.uint16) or image.ndim != 3
        or image.shape[-1] not in (1, 3, 4)):
      raise ValueError(f"expected uint8/uint16 HxWxC pixels with C in 1, 3, 4, got "
                       f"{image.dtype} {image.shape}")
    peak = float(np.iinfo(image.dtype).max)
    pixels = image.astype(np.float32) / peak
    height, width, channels = pixels.shape
    colour = np.repeat(pixels, 3, axis=-1) if channels == 1 else pixels[..., :3]
    out = self._final_size(self._network(colour, progress), height, width)
    if channels == 1:
      out = (out @ LUMA_WEIGHTS)[..., None]
    elif channels == 4:
      out = np.concatenate([out, self._alpha(pixels[..., 3:], progress)], axis=-1)
    return to_pixels(out, image.dtype)


def report(message: str) -> None:
  tqdm.write(f"upscale: error: {message}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
  xla_flags.apply_defaults()
  args = parse_args(argv)
  try:
    paths = collect_inputs(args.inputs)
    outputs = plan_outputs(paths, args.output, args.suffix, args.ext)
    prepare_output_dir(args.output)
    model, params = load_model(args.checkpoint, args.model_scale, args.half)
  except (UsageError, generator_weights.CheckpointError) as error:
    report(str(error))
    return 2
  upscaler = Upscaler(make_apply_fn(model, params), model.scale, args.outscale, args.tile,
                      args.tile_pad, args.batch_size, args.alpha_upsampler)

  failures = 0
  # disable=None: a bar on a terminal, nothing in logs and pipes.
  with tqdm(total=len(paths), unit="image", disable=None, file=sys.stderr) as images_bar:
    for path, out in zip(paths, outputs):
      images_bar.set_postfix_str(os.path.basename(path))
      with tqdm(unit="tile", leave=False, disable=None, file=sys.stderr) as tiles_bar:

        def progress(done, total, bar=tiles_bar):
          bar.total = total
          bar.update(done - bar.n)

        try:
          result = upscaler(read_image_any(path), progress)
          write_image(writable_path(out, result), result)
        except (ImageReadError, ImageWriteError) as error:
          report(str(error))
          failures += 1
      images_bar.update(1)
  if failures:
    report(f"{failures} of {len(paths)} image(s) failed; the others are in {args.output}")
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
