"""A video stream's frames in and out as uint8 RGB arrays (PyAV), one thread each way.

`probe` opens a file and describes its video stream (size, time base, frame rate, colour tags,
display matrix), decoding the first frame to prove that it can be decoded. `FrameReader` decodes
in a thread into a bounded queue; `SegmentWriter` encodes from a bounded queue in another, into a
file holding that one video stream (video.py's remux adds the other streams). PyAV releases the
GIL inside the codecs, so both run beside the network.

Colour: frames become RGB with the stream's own matrix and range (swscale, as PyAV's `to_ndarray`
does by default for the matrix; the range is passed on purpose, so full-range video stays full),
and go back to YUV with the same ones; the output carries the input's colour tags (matrix and
range only where the output is YUV). 8-bit RGB in and out: deeper inputs are read as 8 bits.
FFV1 output is written as `bgr0`, 8-bit RGB, so a decoded frame is the network's output exactly.
"""

import os
import queue
import re
import threading
from fractions import Fraction
from typing import NamedTuple, Optional

import av
import av.logging
import numpy as np

from esrgan_jax import cli

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi")
LOSSLESS_RGB = {"ffv1": "bgr0"}  # codec -> its 8-bit RGB pixel format
# Encoders whose options take --crf and --preset (libvpx-vp9 has crf but calls its speed
# 'deadline'/'cpu-used'; FFV1 is lossless).
CRF_CODECS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1")
PRESET_CODECS = ("libx264", "libx265", "libsvtav1")
_END = object()


class VideoReadError(cli.UserError, ValueError):
  """A video input that cannot be read: no video stream, not a container, no decoder."""


class VideoWriteError(cli.UserError, OSError):
  """A video output that cannot be encoded or written."""


class Colour(NamedTuple):
  """FFmpeg's AVColorRange, AVColorSpace, AVColorPrimaries and AVColorTransferCharacteristic."""
  range: int
  space: int
  primaries: int
  trc: int


class VideoInfo(NamedTuple):
  path: str
  stream_index: int
  width: int
  height: int
  time_base: Fraction
  rate: Fraction  # average frame rate (a guess for streams that do not say)
  frames: int  # the header's count, else duration x rate; 0 when unknown
  duration: Optional[float]  # seconds, when the container says
  pix_fmt: str  # of the decoded frames
  colour: Colour
  display_matrix: Optional[tuple]  # 9 ints (AV_PKT_DATA_DISPLAYMATRIX), None when absent
  codec: str


class Frame(NamedTuple):
  index: int
  pts: int  # in the stream's time base
  pixels: np.ndarray  # HxWx3 uint8 RGB


def _ffmpeg_reason(error: Exception) -> str:
  return " ".join(str(getattr(error, "strerror", None) or error).split())


def _codec_name(container, stream) -> str:
  """The codec of a stream without a decoder (PyAV then gives it no codec context)."""
  level = av.logging.get_level()
  av.logging.set_level(av.logging.INFO)  # dumps_format says nothing below INFO
  try:
    text = container.dumps_format()
  finally:
    av.logging.set_level(level)
  match = re.search(rf"Stream #\d+:{stream.index}\S*: Video: (\w+)", text)
  return match.group(1) if match else "of unknown name"


def _video_stream(container, path):
  streams = [s for s in container.streams.video if not s.disposition & 1024]  # not cover art
  if not streams:
    kinds = sorted({s.type for s in container.streams}) or ["no streams"]
    raise VideoReadError(f"{path}: no video stream to upscale ({', '.join(kinds)} only)")
  stream = streams[0]
  if stream.codec_context is None:
    raise VideoReadError(f"{path}: its video codec {_codec_name(container, stream)} cannot be "
                         "decoded (this FFmpeg build has no decoder for it)")
  return stream


def _display_matrix(frame) -> Optional[tuple]:
  side = frame.side_data.get("DISPLAYMATRIX")
  if side is None:
    return None
  return tuple(int(v) for v in np.frombuffer(bytes(side), np.int32))


def _stream_duration(container, stream) -> Optional[float]:
  """Seconds of the video stream: its own duration, Matroska's DURATION tag, or the file's when
  the video is its only stream (others, like padded audio, may outlast it)."""
  if stream.duration and stream.time_base:
    return float(stream.duration * stream.time_base)
  match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", stream.metadata.get("DURATION", ""))
  if match:
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
  if container.duration and len(container.streams) == 1:
    return container.duration / av.time_base
  return None


def probe(path: str) -> VideoInfo:
  """The video stream of `path`, its first frame decoded; one-line VideoReadError if not."""
  try:
    container = av.open(path)
  except av.FFmpegError as error:
    raise VideoReadError(f"{path}: not a readable video ({_ffmpeg_reason(error)})") from None
  with container:
    stream = _video_stream(container, path)
    try:
      first = next(container.decode(stream), None)
    except av.FFmpegError as error:
      raise VideoReadError(f"{path}: its first video frame does not decode "
                           f"({_ffmpeg_reason(error)})") from None
    if first is None:
      raise VideoReadError(f"{path}: its video stream holds no frame")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
    duration = _stream_duration(container, stream)
    frames = stream.frames or (round(duration * rate) if duration else 0)
    return VideoInfo(path, stream.index, first.width, first.height,
                     stream.time_base or Fraction(1, 90000), Fraction(rate), frames, duration,
                     first.format.name,
                     Colour(first.color_range, first.colorspace, first.color_primaries,
                            first.color_trc),
                     _display_matrix(first), stream.codec_context.name)


def check_encoder(vcodec: str, preset: Optional[str]) -> None:
  """--vcodec names a video encoder of this FFmpeg build, --preset one that takes a preset."""
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


class FrameReader:
  """Decodes the video stream of `info` in a thread, from frame `start` on (earlier frames are
  decoded and dropped), into a queue of at most `queue_frames` frames.

  Iterating yields `Frame`s in presentation order. Decoding that fails part-way (a corrupt or
  truncated file) ends the iteration and leaves the reason in `problem`; what decoded before it
  has been yielded.
  """

  def __init__(self, info: VideoInfo, start: int = 0, queue_frames: int = 8):
    self.info, self.start = info, start
    self.problem: Optional[str] = None
    self.frames_decoded = 0  # every frame, the dropped ones included
    self._last_time = 0.0  # seconds from the first frame to the last decoded one
    self._queue = queue.Queue(max(1, queue_frames))
    self._cancel = threading.Event()
    self._error: Optional[BaseException] = None
    self._thread = threading.Thread(target=self._run, name="video-decode", daemon=True)
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._cancel.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self) -> None:
    info, last_pts, first_pts = self.info, None, None
    try:
      with av.open(info.path) as container:
        stream = container.streams[info.stream_index]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
          for frame in packet.decode():
            index = self.frames_decoded
            self.frames_decoded += 1
            pts = frame.pts
            if pts is None:  # a raw stream without timestamps: the frame's place in time
              pts = round(index / info.rate / info.time_base)
            if last_pts is not None and pts <= last_pts:
              pts = last_pts + 1  # encoders refuse repeated timestamps
            last_pts = pts
            first_pts = pts if first_pts is None else first_pts
            self._last_time = float((pts - first_pts) * info.time_base)
            if index < self.start:
              continue
            # The stream's own range (swscale would take an unspecified one as limited).
            pixels = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
            if pixels.shape[:2] != (info.height, info.width):
              self.problem = (f"{info.path}: frame {index} changes size from "
                              f"{info.width}x{info.height} to {frame.width}x{frame.height}; "
                              f"the {index} frames before it are upscaled")
              return
            if not self._put(Frame(index, pts, pixels)):
              return
      self._check_complete()
    except av.FFmpegError as error:
      done = self.frames_decoded
      self.problem = (f"{info.path}: decoding failed after {done} frames {self._where()} "
                      f"({_ffmpeg_reason(error)}); the {done} frames before it are upscaled")
    except BaseException as error:  # pylint: disable=broad-except
      self._error = error
    finally:
      self._put(_END)

  def _where(self) -> str:
    whole = f" of {self.info.duration:.2f} s" if self.info.duration else ""
    return f"(the last at {self._last_time:.2f} s{whole})"

  def _check_complete(self) -> None:
    """A file cut short often just ends: its last frame must start within two frames of the
    end of the duration its header promised."""
    info, done = self.info, self.frames_decoded
    if done and info.duration and self._last_time + 2 / float(info.rate) < info.duration:
      self.problem = (f"{info.path}: the video stream ends after {done} frames {self._where()}: "
                      f"the file is truncated or damaged; the {done} frames are upscaled")

  def __iter__(self):
    while True:
      item = self._queue.get()
      if item is _END:
        self._thread.join()
        if self._error is not None:
          raise self._error
        return
      yield item

  def close(self) -> None:
    """Stops the thread (any frames still queued are dropped)."""
    self._cancel.set()
    self._thread.join(timeout=10)


class EncodeSettings(NamedTuple):
  vcodec: str
  crf: Optional[int]
  preset: Optional[str]
  fps: Optional[Fraction]  # None: the input's timestamps


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
      raise VideoWriteError(f"{self.path}: cannot be written ({_ffmpeg_reason(error)})") from None
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
      context.options = encoder_options(settings)
      context.thread_type = "AUTO"
      if info.display_matrix is not None:
        stream.set_display_matrix(info.display_matrix)
      context.open()  # now: a bad --preset fails here, before any frame is decoded
      return container, stream
    except (av.FFmpegError, ValueError) as error:
      container.close()
      raise VideoWriteError(f"{self.path}: cannot encode {settings.vcodec} "
                            f"({_ffmpeg_reason(error)})") from None

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
      raise VideoWriteError(f"{self.path}: encoding failed ({_ffmpeg_reason(error)})") from None
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
