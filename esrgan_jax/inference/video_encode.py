"""Encoding upscaled frames (uint8 RGB) into a video-only file in a thread, with PyAV.

`SegmentWriter` takes frames from a bounded queue, converts them to the encoder's pixel format
with the input's colour matrix and range (the tags are copied; matrix and range only where the
output is YUV), and encodes them with the input's timestamps (or `--fps`'s). FFV1 is written as
`bgr0`, 8-bit RGB, so a decoded frame is the network's output exactly. video_mux.py then makes the
output file from the segments and the input's other streams.
"""

import os
import queue
import threading
from fractions import Fraction
from typing import NamedTuple, Optional

import av
import numpy as np

from esrgan_jax import cli
from esrgan_jax.inference.video_decode import VideoInfo, ffmpeg_reason

LOSSLESS_RGB = {"ffv1": "bgr0"}  # codec -> its 8-bit RGB pixel format
# Encoders whose options take --crf and --preset (libvpx-vp9 has crf but calls its speed
# 'deadline'/'cpu-used'; FFV1 is lossless).
CRF_CODECS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1")
PRESET_CODECS = ("libx264", "libx265", "libsvtav1")
# Each encoder's --crf range: libx264 clamps a larger value and libx265 takes -1 silently, the
# others refuse theirs only when the encoder opens; all are told the same way before the work.
CRF_RANGES = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63),
              "libsvtav1": (0, 63)}
_END = object()


class VideoWriteError(cli.UserError, OSError):
  """A video output that cannot be encoded or written."""


def check_encoder(vcodec: str, preset: Optional[str], crf: Optional[int] = None) -> None:
  """--vcodec names a video encoder of this FFmpeg build, --preset one that takes a preset,
  --crf a value in the encoder's range."""
  try:
    codec = av.codec.Codec(vcodec, "w")
  except (av.FFmpegError, ValueError):
    codec = None
  if codec is None or codec.type != "video":
    raise VideoWriteError(f"--vcodec {vcodec}: not a video encoder of this FFmpeg build (try "
                          "libx264, libx265, libvpx-vp9, libsvtav1 or ffv1)")
  if preset is not None and vcodec not in PRESET_CODECS:
    raise VideoWriteError(f"--preset: {vcodec} takes no preset (only "
                          f"{', '.join(PRESET_CODECS)} do)")
  low, high = CRF_RANGES.get(vcodec, (None, None))
  if crf is not None and low is not None and not low <= crf <= high:
    raise VideoWriteError(f"--crf {crf}: {vcodec} takes {low} to {high} (lower is better "
                          "quality)")


def output_pixel_format(vcodec: str, input_pix_fmt: str) -> str:
  """FFV1: 8-bit RGB; otherwise the input's own 8-bit YUV layout where the encoder takes it
  (4:4:4 stays 4:4:4), else yuv420p, else the encoder's first."""
  if vcodec in LOSSLESS_RGB:
    return LOSSLESS_RGB[vcodec]
  formats = [f.name for f in av.codec.Codec(vcodec, "w").video_formats or ()]
  layout = av.VideoFormat(input_pix_fmt)
  if (input_pix_fmt in formats and not layout.is_rgb
      and all(c.bits == 8 for c in layout.components)):
    return input_pix_fmt
  return "yuv420p" if "yuv420p" in formats or not formats else formats[0]


def check_frame_size(path: str, pix_fmt: str, width: int, height: int) -> None:
  """Subsampled chroma (4:2:0, 4:2:2) needs even sides; refused before the work."""
  layout = av.VideoFormat(pix_fmt, width, height)
  if layout.chroma_width() * 2 == width + 1 or layout.chroma_height() * 2 == height + 1:
    raise VideoWriteError(f"{path}: {width}x{height} frames cannot be written as {pix_fmt} "
                          "(its chroma needs even sides); choose an --outscale that gives even "
                          "sides, or --vcodec ffv1")


class EncodeSettings(NamedTuple):
  vcodec: str
  crf: Optional[int]
  preset: Optional[str]
  fps: Optional[Fraction]  # None: the input's timestamps


def _flags_of(settings: EncodeSettings) -> str:
  """The flags that set the encoder's options, as typed: what a refusal is about."""
  flags = [f"--crf {settings.crf}"] if settings.crf is not None and (
      settings.vcodec in CRF_CODECS) else []
  if settings.preset is not None:
    flags.append(f"--preset {settings.preset}")
  return " ".join(flags) or "its default options"


def encoder_options(settings: EncodeSettings) -> dict:
  options = {}
  if settings.vcodec == "libx265":
    options["x265-params"] = "log-level=error"  # else a page of settings on stderr per video
  if settings.crf is not None and settings.vcodec in CRF_CODECS:
    options["crf"] = str(settings.crf)
    if settings.vcodec == "libvpx-vp9":
      options["b"] = "0"  # constant quality, libvpx's meaning of crf with no bitrate
  if settings.preset is not None:
    options["preset"] = settings.preset
  return options


class SegmentWriter:
  """Encodes uint8 RGB frames into `path` (one video stream) in a thread.

  `put(pixels, pts, index)` queues a frame (at most `queue_frames` wait) and raises the thread's
  error if encoding failed; `close()` flushes the encoder and closes the file. Timestamps are the
  input's (`pts` in `info.time_base`) unless settings.fps is set, then frame numbers at that
  rate.
  """

  def __init__(self, path: str, info: VideoInfo, settings: EncodeSettings, width: int,
               height: int, queue_frames: int = 8):
    self.path, self.info, self.settings = path, info, settings
    self.pix_fmt = output_pixel_format(settings.vcodec, info.pix_fmt)
    self.frames_written = 0
    self._queue = queue.Queue(max(1, queue_frames))
    self._error: Optional[BaseException] = None
    self._aborted = False
    self._container, self._stream = self._open(width, height)
    self._thread = threading.Thread(target=self._run, name="video-encode", daemon=True)
    self._thread.start()

  def _open(self, width, height):
    info, settings = self.info, self.settings
    if settings.vcodec == "libsvtav1":
      os.environ.setdefault("SVT_LOG", "1")  # errors only: SVT-AV1 prints its settings itself
    try:
      container = av.open(self.path, "w")
    except (av.FFmpegError, OSError) as error:
      raise VideoWriteError(f"{self.path}: cannot be written ({ffmpeg_reason(error)})") from None
    try:
      rate = settings.fps or info.rate
      stream = container.add_stream(settings.vcodec, rate=rate)
      stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
      context = stream.codec_context
      context.time_base = 1 / settings.fps if settings.fps else info.time_base
      colour = info.colour
      context.color_primaries, context.color_trc = colour.primaries, colour.trc
      if not av.VideoFormat(self.pix_fmt).is_rgb:
        context.color_range, context.colorspace = colour.range, colour.space
      if info.sample_aspect_ratio:  # both sides scale alike: the pixel shape stays
        context.sample_aspect_ratio = info.sample_aspect_ratio
      context.options = encoder_options(settings)
      context.thread_type = "AUTO"
      if info.display_matrix is not None:
        stream.set_display_matrix(info.display_matrix)
      context.open()  # now: a bad --preset fails here, before any frame is decoded
      return container, stream
    except (av.FFmpegError, ValueError) as error:
      container.close()
      raise VideoWriteError(
          f"{self.path}: cannot encode {settings.vcodec} {width}x{height} frames with "
          f"{_flags_of(settings)} ({ffmpeg_reason(error)}); check those flags and --outscale") \
          from None

  def _frame(self, pixels: np.ndarray, pts: int, index: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    colour = self.info.colour
    if av.VideoFormat(self.pix_fmt).is_rgb:
      frame = frame.reformat(format=self.pix_fmt)
    else:
      frame = frame.reformat(format=self.pix_fmt, dst_colorspace=colour.space or None,
                             dst_color_range=colour.range or None)
    if self.settings.fps:
      frame.pts, frame.time_base = index, 1 / self.settings.fps
    else:
      frame.pts, frame.time_base = pts, self.info.time_base
    return frame

  def _run(self) -> None:
    try:
      while True:
        item = self._queue.get()
        if item is _END:
          break
        for packet in self._stream.encode(self._frame(*item)):
          self._container.mux(packet)
        self.frames_written += 1
      if self._aborted:
        return
      for packet in self._stream.encode():
        self._container.mux(packet)
    except BaseException as error:  # pylint: disable=broad-except
      self._error = error
      while self._queue.get() is not _END:  # let put() and close() return
        pass

  def _raise_error(self) -> None:
    if self._error is None:
      return
    error = self._error
    if isinstance(error, (av.FFmpegError, OSError, ValueError)):
      raise VideoWriteError(f"{self.path}: encoding failed ({ffmpeg_reason(error)})") from None
    raise error

  def put(self, pixels: np.ndarray, pts: int, index: int) -> None:
    """Queues frame `index` of the video (its number is its timestamp under --fps)."""
    self._raise_error()
    self._queue.put((pixels, pts, index))

  def close(self) -> None:
    """Encodes what is queued, flushes the encoder and finishes the file."""
    self._queue.put(_END)
    self._thread.join()
    if self._error is not None:
      self._close_quietly()
      self._raise_error()
    self._container.close()

  def _close_quietly(self) -> None:
    try:
      self._container.close()
    except (av.FFmpegError, OSError, ValueError):
      pass

  def abort(self) -> None:
    """Stops without finishing the file properly (the caller removes it)."""
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._aborted = True
    self._queue.put(_END)
    self._thread.join()
    self._close_quietly()
