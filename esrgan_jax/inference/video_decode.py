"""A video file's frames as uint8 RGB arrays (PyAV), decoded in a thread.

`probe` opens a file and describes its video stream (size, time base, frame rate, colour tags,
display matrix), decoding the first frame to prove that it can be decoded. `FrameReader` decodes
in a thread into a bounded queue (PyAV releases the GIL inside the codecs, so it runs beside the
network), and says where and why decoding ended early in a damaged or truncated file.

Colour: frames become RGB with the stream's own matrix and range (swscale, as PyAV's `to_ndarray`
does by default for the matrix; the range is passed on purpose, so full-range video stays full);
video_encode.py goes back to YUV with the same ones. 8-bit RGB: deeper inputs are read as 8 bits.
"""

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
_END = object()


def is_video(path: str) -> bool:
  return path.lower().endswith(VIDEO_EXTENSIONS)


class VideoReadError(cli.UserError, ValueError):
  """A video input that cannot be read: no video stream, not a container, no decoder."""


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
  sample_aspect_ratio: Optional[Fraction] = None  # of anamorphic video (DVD's 8:9, ...)


class Frame(NamedTuple):
  index: int
  pts: int  # in the stream's time base
  pixels: np.ndarray  # HxWx3 uint8 RGB


def ffmpeg_reason(error: Exception) -> str:
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


def frame_size(path: str) -> Optional[tuple[int, int]]:
  """(height, width) of the video stream from the container's header, nothing decoded; None
  when the header does not tell (probe then reports what is wrong with the file)."""
  try:
    with av.open(path) as container:
      context = _video_stream(container, path).codec_context
      size = context.height, context.width
  except (av.FFmpegError, VideoReadError):
    return None
  return size if min(size) > 0 else None


def probe(path: str) -> VideoInfo:
  """The video stream of `path`, its first frame decoded; one-line VideoReadError if not."""
  try:
    container = av.open(path)
  except av.FFmpegError as error:
    raise VideoReadError(f"{path}: not a readable video ({ffmpeg_reason(error)})") from None
  with container:
    stream = _video_stream(container, path)
    try:
      first = next(container.decode(stream), None)
    except av.FFmpegError as error:
      raise VideoReadError(f"{path}: its first video frame does not decode "
                           f"({ffmpeg_reason(error)})") from None
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
                     _display_matrix(first), stream.codec_context.name,
                     stream.sample_aspect_ratio or None)


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
                      f"({ffmpeg_reason(error)}); the {done} frames before it are upscaled")
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
