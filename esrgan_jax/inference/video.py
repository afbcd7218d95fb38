"""Upscaling a video file frame by frame, streaming, with decoding and encoding overlapped.

Three threads share the work: video_decode.FrameReader decodes into a bounded queue, the calling
thread runs the frames through the Upscaler (batches of `--batch_size` windows, several frames per
network call when a frame is one window; JAX dispatches a batch before the previous one is copied
back), and video_encode.SegmentWriter encodes from a bounded queue. Memory is therefore a constant:
the queues, the frames whose windows are in flight, the codecs' own buffers; never the video.

Stopping: Ctrl-C or SIGTERM sets a flag; the current batch is finished (frames are read until no
partial batch waits, so a stop always falls on a batch boundary), the frames done are encoded, and
the output is made a whole, playable file of those frames with a resume note beside it
(video_mux.py). `--resume` decodes past the frames the output holds, upscales the rest into a new
segment and joins the two without re-encoding. Because batches start again on the same boundary,
every frame meets the same network program at the same place in its batch as in an uninterrupted
run: with a lossless codec the joined video equals an uninterrupted run's frame for frame.
"""

import os
import sys
import time
from fractions import Fraction
from typing import Callable, NamedTuple, Optional

from tqdm import tqdm

from esrgan_jax import cli
from esrgan_jax.inference import tiling, video_decode, video_encode, video_mux
from esrgan_jax.inference.apply import to_uint8
from esrgan_jax.inference.upscaler import Upscaler
from esrgan_jax.inference.video_encode import EncodeSettings
from esrgan_jax.runtime.stop_request import StopRequest

SKIP = -1  # `plan_start`: the output is complete, nothing to do


class VideoOptions(NamedTuple):
  encode: EncodeSettings
  resume: bool
  overwrite: bool
  settings: dict  # what a resumed run must share with the stopped one (JSON values)


class VideoResult(NamedTuple):
  summary: str  # one line: frames, sizes, frames/s, realtime factor, the output
  problem: Optional[str]  # why decoding ended early (the frames before it are in the output)


def stop_signals() -> StopRequest:
  """Ctrl-C and SIGTERM as a flag read between frames; the first decides the exit status, and a
  second Ctrl-C stops at once (KeyboardInterrupt: the output keeps what it held before this
  run). Handlers from the main thread only."""
  return StopRequest(_say_stopping, first_decides=True)


def _say_stopping(signum: int) -> None:
  del signum
  print("esrgan_jax: finishing the current batch and stopping (Ctrl-C again: stop at once)",
        file=sys.stderr)


def video_upscaler(apply_fn: tiling.ApplyFn, scale: int, outscale: Optional[float], tile: int,
                   tile_pad: int, batch_size: int, multiple: int) -> Upscaler:
  """The Upscaler of video frames (uint8 RGB): outputs rounded to pixels on the device unless
  --outscale resizes them (the resize takes floats); no limit on outputs held across frames,
  which would make batches depend on timing (the pump bounds what is in flight instead)."""
  if outscale is None or outscale == scale:
    network = apply_fn
    apply_fn = lambda batch: to_uint8(network(batch))
  return Upscaler(apply_fn, scale, outscale, tile, tile_pad, batch_size, multiple=multiple,
                  batch_output_bytes=None)


def output_extension(input_path: str, ext: str, vcodec: str) -> str:
  """The input's container (or `ext`'s), Matroska where that cannot hold `vcodec`."""
  extension = "." + ext if ext != "auto" else os.path.splitext(input_path)[1].lower()
  if extension not in video_decode.VIDEO_EXTENSIONS:
    extension = ".mkv"
  if not video_mux.container_holds(extension, vcodec):
    return ".mkv"
  return extension


def plan_start(source: str, output: str, options: VideoOptions) -> int:
  """The first frame to upscale (0, or where a stopped run ended), or SKIP; refuses (UserError)
  an existing output unless --overwrite or --resume says what to do with it."""
  note = video_mux.read_note(output)
  exists = os.path.exists(output)
  if options.overwrite:
    return 0
  if note is not None:
    if not options.resume:
      raise video_mux.ResumeError(
          f"{output}: the partial output of a stopped run ({note['frames']} frames); add "
          "--resume to continue it or --overwrite to start again")
    video_mux.check_note_settings(output, note, options.settings)
    if not exists:
      raise video_mux.ResumeError(f"{output}: missing, but its resume note is there; use "
                                  "--overwrite to start again")
    return int(note["frames"])
  if exists:
    if options.resume:
      return SKIP
    raise video_encode.VideoWriteError(f"{output}: exists; add --overwrite to replace it")
  return 0


def segment_path(output: str) -> str:
  stem, extension = os.path.splitext(output)
  return f"{stem}.part{extension}"


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


class _Pump:
  """Moves frames reader -> upscaler -> writer, in order, and counts them."""

  def __init__(self, reader, upscaler: Upscaler, writer, start: int, bar, rate: float):
    self.reader, self.upscaler, self.writer, self.bar = reader, upscaler, writer, bar
    self.start = self.next_index = start
    self.last_pts = None
    self._pts, self._done = {}, {}
    self._rate, self._began = rate, time.perf_counter()

  def _drain(self) -> None:
    for index, pixels in self.upscaler.finished():
      self._done[index] = pixels
    while self.next_index in self._done:
      pts = self._pts.pop(self.next_index)
      self.writer.put(self._done.pop(self.next_index), pts, self.next_index)
      self.last_pts = pts
      self.next_index += 1
      self.bar.update(1)
    elapsed = time.perf_counter() - self._began
    if elapsed > 0 and not self.bar.disable:
      realtime = (self.next_index - self.start) / self._rate / elapsed
      self.bar.set_postfix_str(f"{realtime:.2f}x realtime", refresh=False)

  def run(self, stop: StopRequest) -> bool:
    """Returns whether a stop request ended it before the video did."""
    for frame in self.reader:
      # A stop takes effect where no partial batch waits: the batches of a resumed run then
      # begin where an uninterrupted run's do.
      if stop.requested and not self.upscaler.windows_waiting:
        return True
      self._pts[frame.index] = frame.pts
      self.upscaler.submit(frame.pixels, frame.index)
      self._drain()
    self.upscaler.flush()
    self._drain()
    return False


def upscale_video(source: str, output: str, upscaler: Upscaler, options: VideoOptions,
                  stop: StopRequest, start: int = 0) -> VideoResult:
  """Upscales `source` into `output` from frame `start` (plan_start's); see the module doc.

  Raises VideoReadError / VideoWriteError for bad files (one line), and the stop's cli.Stopped
  after leaving a playable partial output and its resume note.
  """
  info = video_decode.probe(source)
  out_height, out_width = upscaler.output_size(info.height, info.width)
  pix_fmt = video_encode.output_pixel_format(options.encode.vcodec, info.pix_fmt)
  video_encode.check_frame_size(output, pix_fmt, out_width, out_height)
  video_mux.check_streams_fit(output, source, options.encode.vcodec)
  segment = segment_path(output)
  # Enough decoded frames for the next batch; upscaled ones are large, a batch's worth waits.
  batch = upscaler.batcher.batch_size
  writer = video_encode.SegmentWriter(segment, info, options.encode, out_width, out_height,
                                      max(2, batch))
  reader = video_decode.FrameReader(info, start, max(4, 2 * batch))
  began = time.perf_counter()
  with tqdm(total=info.frames or None, initial=start, unit="frame", disable=None,
            leave=False, file=sys.stderr, desc=os.path.basename(source)) as bar:
    pump = _Pump(reader, upscaler, writer, start, bar, float(info.rate))
    try:
      stopped = pump.run(stop)
      writer.close()
    except BaseException:
      writer.abort()
      _remove(segment)
      raise
    finally:
      reader.close()
  seconds = time.perf_counter() - began
  problem = None if stopped else reader.problem
  try:
    _assemble(output, segment, info, options, pump, partial=stopped or problem is not None)
  finally:
    _remove(segment)
  if stopped:
    _stop(output, source, options, pump, stop)
  video_mux.remove_note(output)
  frames = pump.next_index - start
  summary = (f"{source}: {frames} frames{f' (from frame {start})' if start else ''} "
             f"{info.width}x{info.height} -> {out_width}x{out_height} in {seconds:.1f} s, "
             f"{frames / max(seconds, 1e-9):.2f} frames/s, "
             f"{frames / float(info.rate) / max(seconds, 1e-9):.2f}x realtime -> {output}")
  return VideoResult(summary, problem)


def _end_time(info, options: VideoOptions, pump: _Pump) -> float:
  """Seconds at which the last frame written ends (the other streams are cut there)."""
  if options.encode.fps:
    return pump.next_index / float(options.encode.fps)
  return float(Fraction(pump.last_pts) * info.time_base) + 1 / float(info.rate)


def _assemble(output, segment, info, options: VideoOptions, pump: _Pump, partial: bool) -> None:
  """The output from what it held before this run (when resumed) and this run's segment."""
  if pump.next_index > pump.start:
    parts = ([output] if pump.start else []) + [segment]
    end_time = _end_time(info, options, pump) if partial else None
    video_mux.assemble(output, parts, info, end_time)
  elif pump.start and not partial:  # resumed where the video ends: the other streams in full
    video_mux.assemble(output, [output], info)


def _stop(output, source, options: VideoOptions, pump: _Pump, stop: StopRequest) -> None:
  """Notes where the output ends and raises the stop's cli.Stopped."""
  if pump.next_index > pump.start:
    video_mux.write_note(output, pump.next_index, pump.last_pts,
                         _end_time(pump.reader.info, options, pump), options.settings)
  if pump.next_index:
    raise stop.stopped(
        f" after frame {pump.next_index} of {source}: {output} is playable and holds its "
        f"first {pump.next_index} frames; the same command with --resume continues")
  raise stop.stopped(f" before the first frame of {source}; nothing was written")


def upscale_videos(jobs, make_upscaler: Callable[[], Upscaler]) -> tuple[int, int]:
  """Upscales each (input, output, VideoOptions, first frame) in turn, printing its summary
  line; returns how many outputs are complete and how many failed, each failure reported in
  one line (a damaged input upscaled as far as it decodes failed). A stop ends the list
  (cli.Stopped). Each video gets its own Upscaler (`make_upscaler()`): one that failed may hold
  its frames."""
  written = failures = 0
  with stop_signals() as stop:
    for source, output, options, start in jobs:
      if stop.requested:
        raise stop.stopped(f" before {source}; the outputs before it are complete")
      try:
        result = upscale_video(source, output, make_upscaler(), options, stop, start)
      except (video_decode.VideoReadError, video_encode.VideoWriteError) as error:
        failures += cli.error(str(error))
        continue
      print(result.summary, flush=True)
      if result.problem:
        failures += cli.error(result.problem)
      else:
        written += 1
  return written, failures
