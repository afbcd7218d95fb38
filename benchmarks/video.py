"""Video upscaling speed: frames/s and realtime factor, decode + encode included and model-only.

  python -m benchmarks.video                                   # CPU: what is feasible there
  python -m benchmarks.video --sizes 480p,1080p --frames 48 --batch_size 8 --preset veryfast
  python -m benchmarks.video --tiny --json rows.json           # tests: tiny clips and models

From the repository root. For each clip size, scale, model and dtype, three figures:
  model     the video Upscaler (esrgan_jax/inference/video.py's video_upscaler: --batch_size
            frames per network call at --tile 0, outputs rounded on the device) over the clip's
            frames already decoded into memory: the network and the host work around it;
  e2e       inference/video.upscale_video from the clip file to an output file: decoding, the
            network and encoding overlapped in their threads, and the final remux with the audio;
  codec     decode-only and encode-only frames/s of the same clip and output size (the ceiling the
            codecs put on e2e; --vcodec/--preset/--crf as the command's).
The realtime factor is video seconds per wall second (frames/s over the clip's 24 frames/s);
e2e/model near 1 means the overlap hides the codecs (the target: within 10% when the codecs are
faster than the model). Each row is timed after a warm-up batch has compiled its programs; --frames
should be a multiple of --batch_size, so that no smaller batch compiles while timed.

Clips: the bundled astronaut photo, enlarged and panned a few pixels per frame (so the codecs see
motion), 24 frames/s, encoded with libx264 (CRF 18, yuv420p) in MP4 with an AAC track. Models:
random weights in PyTorch's default-init ranges (benchmarks/fast_models.py's), SPAN folded. Rows
are printed as they finish and the JSON is rewritten after each, so a run cut short keeps them.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.common import progress
from benchmarks.fast_backends import torch_like_params
from benchmarks.fast_models import MODELS, model_spec

SIZES = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920), "tiny": (24, 32)}
RATE = 24
DTYPES = ("float32", "bfloat16")
# What a 2-core CPU gets through in minutes: RRDBNet takes about a minute per 480p x4 frame there.
CPU_PLAN = "480p:4,2:compact16,compact32,span48;480p:2:rrdb23x64;1080p:2:compact16,span48"


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="", help=f"clip sizes among {list(SIZES)}, or HxW")
  parser.add_argument("--scales", default="4,2", help="model scales (4, 2)")
  parser.add_argument("--rows", default=",".join(MODELS), help=f"subset of {list(MODELS)}")
  parser.add_argument("--dtypes", default=",".join(DTYPES), help="float32, bfloat16")
  parser.add_argument("--plan", default="", help="SIZES:SCALES:ROWS[;...] instead of the "
                      f"product of the three (default on a CPU without --sizes: {CPU_PLAN})")
  parser.add_argument("--frames", type=int, default=4, help="frames per clip (default 4)")
  parser.add_argument("--batch_size", type=int, default=2,
                      help="windows per network call (frames, at --tile 0)")
  parser.add_argument("--tile", type=int, default=0, help="as the command's (default 0: whole "
                      "frames; the command's own default is 256, tile_pad 10)")
  parser.add_argument("--repeats", type=int, default=1, help="timed runs per figure (median)")
  parser.add_argument("--vcodec", default="libx264")
  parser.add_argument("--preset", default=None)
  parser.add_argument("--crf", type=int, default=18)
  parser.add_argument("--json", default="", help="also write every row to this file")
  parser.add_argument("--tiny", action="store_true",
                      help="24x32 clips of 4 frames, Compact 16 and SPAN rows with tiny "
                      "models (fast_models.TINY_MODELS), float32 (tests)")
  args = parser.parse_args(argv)
  if args.tiny:
    args.sizes, args.frames, args.dtypes = args.sizes or "tiny", 4, "float32"
    if args.rows == ",".join(MODELS):
      args.rows = "compact16,span48"
  split = lambda text: [part.strip() for part in text.split(",") if part.strip()]
  if args.plan or not args.sizes:
    plan = args.plan or CPU_PLAN
    try:
      args.plan = [(split(sizes), [int(s) for s in split(scales)], split(rows))
                   for sizes, scales, rows in (part.split(":") for part in plan.split(";"))]
    except ValueError:
      parser.error(f"--plan {plan!r}: expected SIZES:SCALES:ROWS[;...]")
  else:
    args.plan = [(split(args.sizes), [int(s) for s in split(args.scales)], split(args.rows))]
  args.dtypes = split(args.dtypes)
  for sizes, scales, rows in args.plan:
    bad = ([s for s in sizes if s not in SIZES and not _hxw(s)] + [r for r in rows if r not in
           MODELS] + [s for s in scales if s not in (2, 4)])
    if bad:
      parser.error(f"unknown sizes, rows or scales: {bad}")
  if [d for d in args.dtypes if d not in DTYPES] or not args.dtypes:
    parser.error(f"--dtypes: choose from {list(DTYPES)}")
  if args.frames < 1 or args.batch_size < 1 or args.repeats < 1:
    parser.error("--frames, --batch_size and --repeats must be positive")
  return args


def _hxw(text):
  parts = text.lower().split("x")
  return tuple(int(p) for p in parts) if len(parts) == 2 and all(p.isdigit() for p in parts) \
      else None


def frame_size(name):
  return SIZES.get(name) or _hxw(name)


# ------------------------------------------------------------------------------------------------
# The clip and the models.


def make_clip(path, height, width, frames):
  """The panned photo as an x264 MP4 with an AAC track; returns its decoded RGB frames."""
  import av  # pylint: disable=g-import-not-at-top
  import skimage.data  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  side = int(max(height, width) * 1.25) + 2 * frames
  photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((side, side),
                                                                      Image.BICUBIC))
  with av.open(path, "w") as out:
    video = out.add_stream("libx264", rate=RATE, options={"crf": "18", "preset": "veryfast"})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    sound = out.add_stream("aac", rate=48000, layout="stereo")
    for i in range(frames):
      crop = np.ascontiguousarray(photo[i:i + height, 2 * i:2 * i + width])
      frame = av.VideoFrame.from_ndarray(crop, format="rgb24")
      frame.pts = i
      for packet in video.encode(frame):
        out.mux(packet)
    for packet in video.encode():
      out.mux(packet)
    samples = 48000 * frames // RATE
    for first in range(0, samples, 1024):
      tone = np.sin(np.arange(first, min(first + 1024, samples)) / 20.0).astype(np.float32)
      chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
      chunk.sample_rate, chunk.pts = 48000, first
      for packet in sound.encode(chunk):
        out.mux(packet)
    for packet in sound.encode():
      out.mux(packet)
  with av.open(path) as container:
    return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def build_model(row, scale, dtype, tiny=False):
  """(module, inference params, parameter count) with random torch-like weights."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from esrgan_jax.models import rrdbnet, span, srvgg  # pylint: disable=g-import-not-at-top
  _, network, options = model_spec(row, tiny)
  dtype = jnp.dtype(dtype)
  make = {"rrdbnet": lambda **o: rrdbnet.RRDBNet(scale=scale, dtype=dtype, **o),
          "srvgg": lambda **o: srvgg.SRVGGNetCompact(upscale=scale, dtype=dtype, **o),
          "span": lambda **o: span.SPAN(upscale=scale, dtype=dtype, **o)}[network]
  shape = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
  params = torch_like_params(jax.eval_shape(make(**options).init, jax.random.key(0),
                                            shape)["params"])
  if network == "span":
    params, options = span.fold(params), dict(options, deploy=True)
  params = jax.device_put(jax.tree_util.tree_map(np.asarray, params))
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
  return make(**options), params, count


# ------------------------------------------------------------------------------------------------
# Timing.


def model_only(upscaler, frames):
  start = time.perf_counter()
  for index, pixels in enumerate(frames):
    upscaler.submit(pixels, index)
    upscaler.finished()
  upscaler.flush()
  done = len(upscaler.finished())
  return time.perf_counter() - start, done


def end_to_end(upscaler, clip, output, encode):
  from esrgan_jax.inference import video  # pylint: disable=g-import-not-at-top
  options = video.VideoOptions(encode, resume=False, overwrite=True, settings={})
  start = time.perf_counter()
  video.upscale_video(clip, output, upscaler, options, video.stop_signals())
  return time.perf_counter() - start


def codec_rates(clip, output, encode, out_frame, count):
  """(decode-only, encode-only) frames/s: the clip decoded to RGB; `count` copies of an
  upscaled frame encoded as the e2e run encodes."""
  from esrgan_jax.inference import video_decode, video_encode  # pylint: disable=g-import-not-at-top
  info = video_decode.probe(clip)
  start = time.perf_counter()
  decoded = sum(1 for _ in video_decode.FrameReader(info))
  decode_s = time.perf_counter() - start
  start = time.perf_counter()
  writer = video_encode.SegmentWriter(output, info, encode, out_frame.shape[1],
                                      out_frame.shape[0])
  for index in range(count):
    writer.put(out_frame, index, index)
  writer.close()
  encode_s = time.perf_counter() - start
  os.remove(output)
  return decoded / decode_s, count / encode_s


def measure(args, work, size_name, frames, clip, scale, row, dtype, encode):
  import jax  # pylint: disable=g-import-not-at-top
  from esrgan_jax.inference import tiling, video  # pylint: disable=g-import-not-at-top
  from esrgan_jax.inference.apply import apply_generator  # pylint: disable=g-import-not-at-top
  model, params, count = build_model(row, scale, dtype, args.tiny)
  multiple = tiling.input_multiple(scale) if MODELS[row][1] == "rrdbnet" else 1
  upscaler = video.video_upscaler(lambda batch: apply_generator(model, params, batch), scale,
                                  None, args.tile, 10 if args.tile else 0, args.batch_size,
                                  multiple)
  start = time.perf_counter()
  model_only(upscaler, frames[:args.batch_size])  # compiles the full-batch programs
  compile_s = time.perf_counter() - start
  progress(f"{size_name} x{scale} {row} {dtype}: warm-up batch (compiling) {compile_s:.1f} s")
  model_s, e2e_s = [], []
  for _ in range(args.repeats):
    model_s.append(model_only(upscaler, frames)[0])
    e2e_s.append(end_to_end(upscaler, clip, os.path.join(work, f"out{os.path.splitext(clip)[1]}"),
                            encode))
  model_fps = len(frames) / statistics.median(model_s)
  e2e_fps = len(frames) / statistics.median(e2e_s)
  height, width = frames[0].shape[:2]
  return dict(size=size_name, input=f"{height}x{width}", scale=scale, row=row,
              model=model_spec(row, args.tiny)[0], dtype=dtype, params=count,
              frames=len(frames), batch_size=args.batch_size, tile=args.tile,
              model_fps=model_fps, e2e_fps=e2e_fps,
              model_realtime=model_fps / RATE, e2e_realtime=e2e_fps / RATE,
              e2e_over_model=e2e_fps / model_fps, model_s=model_s, e2e_s=e2e_s,
              compile_s=compile_s, platform=jax.default_backend(),
              device=jax.devices()[0].device_kind)


HEADER = (f"{'size':<8} {'scale':>5} {'model':<14} {'dtype':<9} {'frames':>6} {'model f/s':>10} "
          f"{'x rt':>7} {'e2e f/s':>9} {'x rt':>7} {'e2e/model':>9} {'decode f/s':>10} "
          f"{'encode f/s':>10}")


def line(r):
  return (f"{r['size']:<8} {'x' + str(r['scale']):>5} {r['model']:<14} {r['dtype']:<9} "
          f"{r['frames']:>6} {r['model_fps']:10.3f} {r['model_realtime']:7.3f} "
          f"{r['e2e_fps']:9.3f} {r['e2e_realtime']:7.3f} {r['e2e_over_model']:9.2f} "
          f"{r['decode_fps']:10.1f} {r['encode_fps']:10.1f}")


def main(argv=None):
  args = parse_args(argv)
  from esrgan_jax.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.apply_defaults()
  from esrgan_jax.runtime import backends  # pylint: disable=g-import-not-at-top
  backends.start_quietly()
  from esrgan_jax.inference import video_encode  # pylint: disable=g-import-not-at-top
  load = os.getloadavg()
  print(f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} CPUs, load "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; --batch_size {args.batch_size}, --tile "
        f"{args.tile}, "
        f"{args.vcodec} preset {args.preset or 'default'} CRF {args.crf}", flush=True)
  encode = video_encode.EncodeSettings(args.vcodec, args.crf, args.preset, None)
  results, failures, codecs, clips = [], [], {}, {}
  with tempfile.TemporaryDirectory() as work:
    for sizes, scales, rows in args.plan:
      for size_name in sizes:
        height, width = frame_size(size_name)
        clip = os.path.join(work, f"clip_{height}x{width}.mp4")
        if clip not in clips:
          clips[clip] = make_clip(clip, height, width, args.frames)
        frames = clips[clip]
        for scale in scales:
          for row in rows:
            for dtype in args.dtypes:
              try:
                r = measure(args, work, size_name, frames, clip, scale, row, dtype, encode)
                if (clip, scale) not in codecs:
                  upscaled = np.repeat(np.repeat(frames[0], scale, 0), scale, 1)
                  codecs[(clip, scale)] = codec_rates(
                      clip, os.path.join(work, "codec.mp4"), encode, upscaled, len(frames))
                r["decode_fps"], r["encode_fps"] = codecs[(clip, scale)]
              except Exception as error:  # pylint: disable=broad-except
                failures.append(f"{size_name} x{scale} {row} {dtype}: {type(error).__name__}: "
                                f"{error}")
                print(f"FAILED {failures[-1]}", flush=True)
                continue
              results.append(r)
              if len(results) == 1:
                print(HEADER)
              print(line(r), flush=True)
              if args.json:
                write_json(args, results, failures, load)
  if args.json:
    write_json(args, results, failures, load)
  end = os.getloadavg()
  print(f"load at the end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
  if failures:
    sys.exit(1)


def write_json(args, results, failures, load):
  plan = [dict(sizes=s, scales=c, rows=r) for s, c, r in args.plan]
  with open(args.json, "w") as f:
    json.dump(dict(args=dict(plan=plan, dtypes=args.dtypes, frames=args.frames,
                             batch_size=args.batch_size, tile=args.tile, repeats=args.repeats,
                             vcodec=args.vcodec, preset=args.preset, crf=args.crf),
                   load=load, results=results, failures=failures), f, indent=1)


if __name__ == "__main__":
  main()
