"""What `upscale` settles about its videos before any work: where each one starts (`--resume`,
`--overwrite`) and whether its frames may be upscaled at all.

A video whose upscaled frame is more than `--max_pixels` pixels, or whose whole frames (`--tile
0`) need more memory than there is or run a convolution past XLA:CPU's limit
(inference/whole_image.py), is refused in one line with the wording used for images, from the
frame size in the container's header: nothing is decoded and no output is begun. The other
inputs are still upscaled; the refusal counts as a failure.
"""

from fractions import Fraction
import os
from typing import Callable, NamedTuple, Optional

from esrgan_jax import cli
from esrgan_jax.inference import output_limits, video, video_decode, video_encode, whole_image


class VideoPlan(NamedTuple):
  jobs: list  # (input, output, VideoOptions, first frame) of each video to upscale
  refused: int  # videos refused before the work (each reported in one line)
  skipped: int  # complete before (--resume)


def video_settings(args, source: str) -> dict:
  """What a resumed run must share with the stopped one: its input file and every flag that
  changes its frames or their encoding (--batch_size too: the batches a frame meets)."""
  stat = os.stat(source)
  return {"input": os.path.abspath(source), "input_bytes": stat.st_size,
          "input_mtime_ns": stat.st_mtime_ns, "checkpoint": os.path.abspath(args.checkpoint),
          "outscale": args.outscale, "tile": args.tile, "tile_pad": args.tile_pad,
          "batch_size": args.batch_size, "half": args.half, "vcodec": args.vcodec,
          "crf": args.crf, "preset": args.preset, "fps": args.fps}


def check_frames(path: str, args, output_size: Callable[[int, int], tuple],
                 memory: Optional[Callable[[], whole_image.CallMemory]], tile_pad: int) -> None:
  """Refuses (a one-line UserError) a video whose frames are too large; announces a large
  one. `memory()`: the network's CallMemory, asked for only with --tile 0."""
  size = video_decode.frame_size(path)
  if size is None:
    return  # upscale_video's probe says what is wrong with the file
  note = output_limits.check_output(path, size, output_size(*size), 3, 1, args.max_pixels)
  if note:
    print(note, flush=True)
  if memory is not None:
    whole_image.check(path, "frame", memory(), args.batch_size, *size, tile_pad)


def plan_videos(args, paths, outputs, output_size: Callable[[int, int], tuple],
                memory: Optional[Callable[[], whole_image.CallMemory]],
                tile_pad: int) -> VideoPlan:
  """The videos to do; before any work, refuses outputs that exist (unless --overwrite or
  --resume) and notes from other settings (UserError, the whole run), and frames too large
  (that video only, reported here)."""
  fps = Fraction(args.fps).limit_denominator(1001000) if args.fps else None  # 29.97: 2997/100
  encode = video_encode.EncodeSettings(args.vcodec, args.crf, args.preset, fps)
  jobs, refused, skipped = [], 0, 0
  for path, out in zip(paths, outputs):
    if not video_decode.is_video(path):
      continue
    options = video.VideoOptions(encode, args.resume, args.overwrite, video_settings(args, path))
    start = video.plan_start(path, out, options)
    if start == video.SKIP:
      print(f"{out}: complete, skipped (--resume)")
      skipped += 1
      continue
    try:
      check_frames(path, args, output_size, memory, tile_pad)
    except (output_limits.OutputTooLargeError, whole_image.NotEnoughMemoryError,
            whole_image.ConvolutionTooLargeError) as error:
      refused += cli.error(str(error))
      continue
    jobs.append((path, out, options, start))
  return VideoPlan(jobs, refused, skipped)
