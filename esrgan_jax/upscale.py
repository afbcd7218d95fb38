"""Super-resolves image files with a generator checkpoint, tile by tile.

  python -m esrgan_jax.upscale -i photo.png folder/ -o results/ --checkpoint ckpt/ \\
      [--tile 256] [--tile_pad 10] [--outscale 3.5] [--half] [--batch_size 4] [--suffix out]

Flags use Real-ESRGAN's names (`--tile_pad`, `--outscale`, `--alpha_upsampler`, ...); the hyphen
spellings (`--tile-pad`) work too. Every output keeps its input's pixel format (8/16-bit, gray,
RGB, RGBA; see esrgan_jax/inference/upscaler.py). `--outscale` resizes the network's output to
ceil(input size * outscale) with MATLAB's bicubic imresize, the resize the benchmarks' LR images
were made with.

Exactness: an image (or an axis) no larger than one window (tile + 2 * tile_pad) runs whole, as
`--tile 0` does. Larger images are tiled; with Real-ESRGAN's default `--tile_pad 10` tiles can
differ from whole-image inference by a few 8-bit levels near their borders (tests/inference/test_tiling.py
measures it), and `--tile_pad exact` (the network's receptive field, 349 px for 23 RRDBs at x4)
makes the result equal whole-image inference (tiling.generator_radius: 21 px for SPAN, num_conv + 2
for Real-ESRGAN compact models).

Memory: for one image, about its input plus its output (height x width x channels at 1 or 2
bytes, as written) plus a constant: the runtime and the network's working memory for
`--batch_size` windows of (tile + 2 * tile_pad) pixels, which grows with those flags and the
network's width, not with the image. benchmarks/upscale.py measured, with the defaults and a tiny
x4 model on 2 CPU cores, peak resident memory minus the uint8 output: 0.70, 0.74, 0.78 and 0.92
GiB for 1000, 2000, 4000 and 8000 px square inputs (the last a 32000x32000 output of 2.86 GiB,
3.78 GiB peak). PNG and TIFF are written from the output as it is; JPEG, WebP and BMP go through
Pillow, which first converts the pixels into its own copy (4 bytes per pixel); an output larger
than its format can hold (JPEG 65500, WebP 16383 pixels a side) is refused before the work, and
so is one of more than `--max_pixels` pixels (default 2**30, 32768 x 32768: 3 GiB as 8-bit RGB;
raise it for larger outputs); an output of 1 GiB or more is announced, size and memory, before
its work starts (see esrgan_jax/inference/output_limits.py).
`--tile 0` holds the whole float32 output (12 bytes per RGB pixel), and the network's working
memory grows with the image: before each image's or video's work its need (XLA's memory figure
for the compiled network, measured once per model at 64x64 and scaled by pixels and by the
images or frames a call holds) is compared with the memory available (MemAvailable on the CPU, a
GPU's or TPU's free memory), and past it the file is refused in one line that names both and
suggests a `--tile` that fits (esrgan_jax/inference/whole_image.py). `--tile 0` always means
whole images: tiles are never chosen behind the user's back.

Small images are upscaled several at a time (up to 256 MB of outputs) so that their windows share
network calls (`--batch_size` windows per call). An animated GIF/PNG/WebP is upscaled frame by
frame into an animation with the same frame durations and loop count; all its output frames are
held until it is written.

Videos (.mp4 .mkv .mov .webm .avi) stream through the same upscaler, decoding, the network and
encoding overlapped, in bounded memory: same frames, timestamps, rotation and colour tags, audio
and subtitles copied; `--vcodec` (default libx264) with `--crf` and `--preset`, `--fps` to
override the timing. `--vcodec ffv1` is lossless 8-bit RGB. Ctrl-C or SIGTERM finishes the current
batch and leaves a playable partial output and a resume note; the same command with `--resume`
continues it. An existing video output is refused unless `--overwrite` (or `--resume`), and so
is a video whose upscaled frames are past `--max_pixels`, from the frame size in the container's
header, before its work. See esrgan_jax/inference/video.py and video_plan.py.

Errors are one line each on stderr. An unreadable image or video is reported and skipped, the
other inputs are still processed. The last line says how many were written where (exit 0), or
how many failed and how many outputs are complete (exit 1); a missing checkpoint or a bad flag
creates nothing, and an -o folder that this run created is removed again when nothing was
written into it (every input refused or failed); a folder that was there before is kept.
"""

import os
import sys
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from esrgan_jax import cli
from esrgan_jax.data import images as images_io, output_names
from esrgan_jax.inference import (image_files, output_limits, tiling, video, video_decode,
                                  video_encode, video_plan, whole_image)
from esrgan_jax.inference.apply import apply_generator
from esrgan_jax.runtime import backends, xla_flags
from esrgan_jax.weights import generator as generator_weights
from esrgan_jax.data.images import IMAGE_EXTENSIONS, read_image_any
from esrgan_jax.inference.upscaler import Upscaler, output_size

INPUT_EXTENSIONS = IMAGE_EXTENSIONS + (".gif",)
VIDEO_EXTENSIONS = video_decode.VIDEO_EXTENSIONS


def _tile_pad(value: str):
  if value == "exact":
    return value
  try:
    return int(value)
  except ValueError:
    raise cli.UserError(f"--tile_pad must be a number of pixels or 'exact', got {value!r}") \
        from None


def parse_args(argv: Optional[Sequence[str]]):
  parser = cli.argument_parser("esrgan_jax.upscale",
                               "Super-resolve images with an ESRGAN generator checkpoint.\n\n"
                               + __doc__.split("\n\n", 2)[2])
  parser.add_argument("inputs", nargs="*", metavar="INPUT",
                      help="image and video files and/or folders")
  parser.add_argument(*cli.flag("input", "-i"), action="append", default=[], dest="more_inputs",
                      metavar="INPUT", help="an image file or folder (repeatable), as in "
                      "Real-ESRGAN; positional inputs work too")
  parser.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                      help="folder for the results (created if missing)")
  parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                      help="generator checkpoint (esrgan_jax.convert / interpolate / export)")
  parser.add_argument(*cli.flag("model_scale"), type=int, choices=(1, 2, 4),
                      help="refuse a checkpoint of any other scale")
  parser.add_argument(*cli.flag("outscale"), type=float,
                      help="final upscaling factor (default: the model's scale)")
  parser.add_argument(*cli.flag("max_pixels"), type=int,
                      default=output_limits.DEFAULT_MAX_PIXELS,
                      help="refuse an output of more pixels than this, before the work "
                      f"(default {output_limits.DEFAULT_MAX_PIXELS}: 32768 x 32768, 3 GiB as "
                      "8-bit RGB)")
  parser.add_argument(*cli.flag("tile"), type=int, default=256,
                      help="tile size in input pixels, 0 for whole images (refused where one "
                      "would not fit in memory; default 256)")
  parser.add_argument(*cli.flag("tile_pad"), default="10",
                      help="context pixels around each tile (default 10, Real-ESRGAN's), or "
                      "'exact': the network's receptive field, tiles then equal whole-image "
                      "inference")
  parser.add_argument(*cli.flag("batch_size"), type=int, default=4,
                      help="windows per network call, from one image or several (default 4)")
  parser.add_argument("--half", action="store_true",
                      help="compute in bfloat16 (for accelerators; slow on CPU)")
  parser.add_argument(*cli.flag("alpha_upsampler"), choices=("model", "bicubic"),
                      default="model", help="how an alpha channel is upscaled (default: the "
                      "network)")
  parser.add_argument(*cli.flag("suffix"), default="out",
                      help="appended to output names as NAME_SUFFIX.EXT ('' for none)")
  parser.add_argument(*cli.flag("ext"), default="auto",
                      choices=("auto",) + tuple(e.lstrip(".") for e in INPUT_EXTENSIONS
                                                + VIDEO_EXTENSIONS),
                      help="output format (default: the input's, PNG where it cannot hold the "
                      "image's alpha or 16-bit pixels, MKV where a video's container cannot "
                      "hold --vcodec); an image format applies to images, a video one to videos")
  parser.add_argument("--fps", type=float, help="video: output frame rate (default: the "
                      "input's timestamps, variable frame rate kept)")
  parser.add_argument("--vcodec", default="libx264", help="video encoder (default libx264; "
                      "libx265, libvpx-vp9, libsvtav1, ffv1: lossless 8-bit RGB)")
  parser.add_argument("--crf", type=int, default=18, help="video: constant-quality level for "
                      "libx264/libx265/libvpx-vp9/libsvtav1 (default 18)")
  parser.add_argument("--preset", help="video: the encoder's preset (libx264/libx265: medium, "
                      "slow, ...; libsvtav1: 0-13); default the encoder's")
  parser.add_argument("--resume", action="store_true", help="video: continue the partial "
                      "outputs of stopped runs (their notes); skip complete ones")
  parser.add_argument("--overwrite", action="store_true",
                      help="video: replace existing outputs (images are always replaced)")
  args = parser.parse_args(argv)
  args.inputs = args.inputs + args.more_inputs
  if not args.inputs:
    parser.error("no input: give image files or folders (positional or -i/--input)")
  return args


def check_values(args) -> None:
  """Flag values argparse cannot check; one-line UserError (exit 1)."""
  args.tile_pad = _tile_pad(args.tile_pad)
  if args.tile < 0:
    raise cli.UserError(f"--tile must be >= 0 (0: whole images), got {args.tile}")
  if args.tile_pad != "exact" and args.tile_pad < 0:
    raise cli.UserError(f"--tile_pad must be >= 0, got {args.tile_pad}")
  if args.batch_size < 1:
    raise cli.UserError(f"--batch_size must be >= 1, got {args.batch_size}")
  if args.outscale is not None and not (args.outscale > 0 and np.isfinite(args.outscale)):
    raise cli.UserError(f"--outscale must be a positive number, got {args.outscale}")
  if args.max_pixels < 1:
    raise cli.UserError(f"--max_pixels must be >= 1, got {args.max_pixels}")
  output_limits.check_outscale(args.outscale, args.max_pixels)
  if args.fps is not None and not (args.fps > 0 and np.isfinite(args.fps)):
    raise cli.UserError(f"--fps must be a positive number, got {args.fps}")
  video_encode.check_encoder(args.vcodec, args.preset, args.crf)


def _list_folder(folder: str) -> list[str]:
  names = sorted(n for n in os.listdir(folder)
                 if not n.startswith(".") and n.lower().endswith(INPUT_EXTENSIONS
                                                                 + VIDEO_EXTENSIONS)
                 and os.path.isfile(os.path.join(folder, n)))
  if not names:
    raise cli.UserError(f"{folder}: no image files ({', '.join(INPUT_EXTENSIONS)}) or videos "
                        f"({', '.join(VIDEO_EXTENSIONS)}) found")
  return [os.path.join(folder, n) for n in names]


def collect_inputs(inputs: Sequence[str]) -> list[str]:
  """The image files named by `inputs`, folders expanded (not recursively), in order."""
  paths = []
  for name in inputs:
    if os.path.isdir(name):
      paths.extend(_list_folder(name))
    elif os.path.exists(name):
      paths.append(name)
    else:
      raise cli.UserError(f"{name}: no such file or folder")
  return paths


def output_path(input_path: str, outdir: str, suffix: str, ext: str,
                vcodec: str = "libx264") -> str:
  """OUTDIR/NAME_SUFFIX.EXT; an image's extension may still change to PNG, see
  image_files.writable_path."""
  stem, input_ext = os.path.splitext(os.path.basename(input_path))
  name = f"{stem}_{suffix}" if suffix else stem
  if video_decode.is_video(input_path):
    video_ext = ext if "." + ext in VIDEO_EXTENSIONS else "auto"
    return os.path.join(outdir, name + video.output_extension(input_path, video_ext, vcodec))
  if "." + ext in VIDEO_EXTENSIONS:
    ext = "auto"
  if ext != "auto":
    input_ext = "." + ext
  elif input_ext.lower() not in INPUT_EXTENSIONS:
    input_ext = ".png"
  return os.path.join(outdir, name + input_ext.lower())


def plan_outputs(paths: Sequence[str], outdir: str, suffix: str, ext: str,
                 vcodec: str = "libx264") -> list[str]:
  """Output paths, refusing any that would overwrite an input or another output."""
  outputs = [output_path(path, outdir, suffix, ext, vcodec) for path in paths]
  # Outputs compared without the extension: a fallback to PNG must not collide either.
  output_names.refuse_clashes(
      paths, outputs, key=lambda real: os.path.splitext(real)[0],
      replaces="{output}: output would overwrite its input; choose another -o or --suffix",
      both="{path} and {other} would both be written to {output}; upscale them into different "
           "folders")
  return outputs


def load_model(checkpoint: str, model_scale: Optional[int], half: bool):
  """The generator module and its params; one-line CheckpointError when they do not fit."""
  params, arch = generator_weights.load_generator(checkpoint)
  if model_scale is not None and arch["scale"] != model_scale:
    raise generator_weights.CheckpointError(
        f"{checkpoint}: checkpoint is a x{arch['scale']} model, but --model_scale "
        f"{model_scale} was given")
  if arch["num_in_ch"] != 3 or arch["num_out_ch"] != 3:
    raise generator_weights.CheckpointError(
        f"{checkpoint}: upscaling needs an RGB generator (3 channels in and out), this one has "
        f"{arch['num_in_ch']} in and {arch['num_out_ch']} out")
  # SPAN runs folded: one conv per Conv3XC, the same function.
  return generator_weights.inference_model_and_params(
      arch, params, dtype=jnp.bfloat16 if half else jnp.float32)


def make_apply_fn(model, params):
  """float32 NHWC -> float32 NHWC through the process-wide cached jitted apply."""
  params = jax.device_put(params)
  return lambda batch: apply_generator(model, params, batch)


def main(argv: Optional[Sequence[str]] = None) -> int:
  xla_flags.apply_defaults()
  args = parse_args(argv)
  backends.start_quietly()
  return cli.run(lambda: _upscale_all(args),
                 stopped="; the images written before it are complete")


def _upscale_all(args):
  check_values(args)
  paths = collect_inputs(args.inputs)
  outputs = plan_outputs(paths, args.output, args.suffix, args.ext, args.vcodec)
  # Everything that can fail at once is checked before -o is created: nothing left behind.
  output_limits.check_output_dir(args.output)
  model, params = load_model(args.checkpoint, args.model_scale, args.half)
  arch = generator_weights.arch_of(model)
  tile_pad = tiling.generator_radius(arch) if args.tile_pad == "exact" else args.tile_pad
  multiple = tiling.generator_multiple(arch)
  memory = None
  if args.tile == 0:  # whole images: their network memory grows with them (whole_image.py)
    memory = lambda: whole_image.call_memory(model, params, multiple)
  plan = video_plan.plan_videos(args, paths, outputs,
                                lambda h, w: output_size(h, w, arch["scale"], args.outscale),
                                memory, tile_pad)
  created = output_limits.prepare_output_dir(args.output)
  try:
    written, failures = _upscale_files(args, model, params, paths, outputs, plan, memory,
                                       tile_pad, multiple)
  finally:
    output_limits.remove_if_unused(args.output, created)  # a run that wrote nothing
  return _summary(paths, written, failures + plan.refused, plan.skipped, args.output)


def _upscale_files(args, model, params, paths, outputs, plan, memory, tile_pad, multiple):
  """Upscales the images, then the videos of `plan`; (outputs written, failures)."""
  images = [(p, o) for p, o in zip(paths, outputs) if not video_decode.is_video(p)]
  arch = generator_weights.arch_of(model)
  upscaler_args = (make_apply_fn(model, params), arch["scale"], args.outscale, args.tile,
                   tile_pad, args.batch_size, args.alpha_upsampler)
  written = failures = 0
  if images:
    # disable=None: bars on a terminal, nothing in logs and pipes.
    with tqdm(total=len(images), unit="image", disable=None, file=sys.stderr) as images_bar, \
        tqdm(unit="window", leave=False, disable=None, file=sys.stderr) as windows_bar, \
        images_io.no_pillow_pixel_limit():  # --max_pixels is the limit

      def progress(done, total):
        windows_bar.total = total
        windows_bar.update(done - windows_bar.n)

      upscaler = Upscaler(*upscaler_args, progress, multiple=multiple)
      written, failures = image_files.upscale_images(args, upscaler, *zip(*images), images_bar,
                                                     memory, tile_pad, read_image_any)
  if plan.jobs:
    videos_written, video_failures = video.upscale_videos(
        plan.jobs, lambda: video.video_upscaler(*upscaler_args[:6], multiple))
    written += videos_written
    failures += video_failures
  return written, failures


def _summary(paths, written: int, failures: int, skipped: int, outdir: str):
  """The last line: what was written where (exit 0), or how many failed and how many outputs
  are complete (exit 1). Counted from what was written, not from the progress bars (disabled
  where stderr is no terminal). Videos alone end with their own summary lines."""
  kind = {0: "image(s)", len(paths): "video(s)"}.get(sum(map(video_decode.is_video, paths)), "file(s)")
  complete = written + skipped  # skipped: complete videos before (--resume)
  if failures:
    rest = (f"the other {complete} are in {outdir}" if complete else
            f"nothing was written to {outdir}")
    return cli.error(f"{failures} of {len(paths)} {kind} failed; {rest}")
  if kind == "video(s)":
    return cli.EXIT_OK  # each video's own line has said where it went
  return f"wrote {written} {kind} to {outdir}" + (
      f" ({skipped} complete before, skipped)" if skipped else "")


if __name__ == "__main__":
  sys.exit(main())
