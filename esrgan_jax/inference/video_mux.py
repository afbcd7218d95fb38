"""The finished video file: encoded video segments joined, the input's other streams copied.

The upscaled video is encoded into a file of its own, a "segment" (video_encode.SegmentWriter). The
output is then made by remuxing: the video packets of every segment in order, and the input's
audio and subtitle packets unchanged, interleaved by time, into a temporary file renamed over the
output at the end, so the output is always a whole, playable file. Nothing is re-encoded: a run
that was stopped and resumed is its first output's packets followed by the new segment's (each
segment starts with a key frame; FFV1 frames are all key frames, so a lossless result equals an
uninterrupted run's frame for frame). A stopped run keeps the other streams up to the end of its
last frame.

The resume note (`OUTPUT.resume.json`) is written beside a stopped run's output: how many frames
the output holds and the settings that made them, which a resumed run must share.
"""

import heapq
import itertools
import json
import math
import os
from fractions import Fraction
from typing import Optional, Sequence

import av

from esrgan_jax import cli
from esrgan_jax.inference.video_decode import VideoInfo
from esrgan_jax.inference.video_encode import VideoWriteError

NOTE_SUFFIX = ".resume.json"
COPIED_TYPES = ("audio", "subtitle")


class ResumeError(cli.UserError, ValueError):
  """A resume note that cannot be used: unreadable, or from other settings or another input."""


def container_holds(extension: str, codec: str) -> bool:
  """Whether the container of `extension` (".mp4", ...) can hold video encoded with `codec`."""
  try:
    output = av.open(os.devnull, "w", format=_format_name(extension))
  except (av.FFmpegError, ValueError):
    return False
  with output:
    try:
      output.add_stream(codec, rate=25)
      return True
    except ValueError:
      return False


def _format_name(extension: str) -> str:
  return {".mkv": "matroska", ".mov": "mov", ".mp4": "mp4", ".webm": "webm",
          ".avi": "avi"}.get(extension.lower(), extension.lstrip(".").lower())


def check_streams_fit(output: str, source: str, codec: str) -> None:
  """Before the work: the output's container takes the video codec and every stream copied."""
  extension = os.path.splitext(output)[1]
  if not container_holds(extension, codec):
    raise VideoWriteError(f"{output}: a {extension} file cannot hold {codec} video; choose "
                          "another --ext")
  with av.open(source) as container, \
      av.open(os.devnull, "w", format=_format_name(extension)) as probe:
    for stream in container.streams:
      if stream.type not in COPIED_TYPES:
        continue
      try:
        probe.add_stream_from_template(stream)
      except ValueError:
        name = stream.codec_context.name if stream.codec_context else "of its codec"
        raise VideoWriteError(f"{output}: a {extension} file cannot hold the {stream.type} "
                              f"stream #{stream.index} ({name}) of {source}; choose another "
                              "--ext (mkv holds every stream)") from None


def _seconds(packet) -> Fraction:
  stamp = packet.dts if packet.dts is not None else packet.pts
  return Fraction(stamp) * packet.time_base


def _video_packets(segments: Sequence[str]):
  """Every video packet of the segments, in order, with decode timestamps kept increasing
  across a join (each encoder starts its own timeline; a B-frame encoder's first dts may lie
  before the previous segment's last)."""
  last = None
  for path in segments:
    with av.open(path) as container:
      for packet in container.demux(container.streams.video[0]):
        if packet.size == 0:
          continue  # the demuxer's end-of-stream marker
        if last is not None and packet.dts is not None and _seconds(packet) <= last:
          packet.dts = math.floor(last / packet.time_base) + 1
          if packet.pts is not None and packet.dts > packet.pts:
            raise VideoWriteError(f"{path}: its timestamps cannot follow the previous part's")
        if packet.dts is not None:
          last = _seconds(packet)
        yield packet


def _other_packets(container, streams, end_time: Optional[float]):
  if not streams:
    return
  for packet in container.demux(*streams):
    if packet.size == 0 or (packet.dts is None and packet.pts is None):
      continue
    if end_time is not None and packet.pts is not None and \
        packet.pts * packet.time_base >= end_time:
      continue
    yield packet


def assemble(output: str, segments: Sequence[str], info: VideoInfo,
             end_time: Optional[float] = None) -> None:
  """Writes `output` from the segments' video and `info.path`'s audio and subtitle streams (up to
  `end_time` seconds when given), through a temporary file renamed over it."""
  stem, extension = os.path.splitext(output)
  temporary = f"{stem}.tmp{extension}"
  try:
    with av.open(segments[0]) as first, av.open(info.path) as source, \
        av.open(temporary, "w") as out:
      # opaque: the template's own codec, so a stream whose decoder has no encoder of the same
      # name (AV1 read by libdav1d) is copied too; nothing is encoded here.
      video = out.add_stream_from_template(first.streams.video[0], opaque=True)
      if info.display_matrix is not None:  # the template copy drops the stream's side data
        video.set_display_matrix(info.display_matrix)
      copies = {}
      for stream in source.streams:
        if stream.type in COPIED_TYPES:
          copy = out.add_stream_from_template(stream)
          copy.metadata.update(stream.metadata)
          copy.disposition = stream.disposition
          copies[stream.index] = copy
      counter = itertools.count()  # ties keep each source's order
      merged = heapq.merge(
          ((_seconds(p), next(counter), p, video) for p in _video_packets(segments)),
          ((_seconds(p), next(counter), p, copies[p.stream.index])
           for p in _other_packets(source, [source.streams[i] for i in copies], end_time)))
      for _, _, packet, stream in merged:
        packet.stream = stream
        out.mux(packet)
    os.replace(temporary, output)
  except (av.FFmpegError, OSError) as error:
    _remove(temporary)
    reason = getattr(error, "strerror", None) or error
    raise VideoWriteError(f"{output}: could not be written ({reason})") from None
  except BaseException:
    _remove(temporary)
    raise


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def note_path(output: str) -> str:
  return output + NOTE_SUFFIX


def read_note(output: str) -> Optional[dict]:
  path = note_path(output)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as file:
      note = json.load(file)
    int(note["frames"])
    dict(note["settings"])
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise ResumeError(f"{path}: not a readable resume note ({error}); remove it or use "
                      "--overwrite") from None
  return note


def write_note(output: str, frames: int, last_pts: int, end_time: float,
               settings: dict) -> None:
  path = note_path(output)
  with open(path + ".tmp", "w", encoding="utf-8") as file:
    json.dump({"frames": frames, "last_pts": last_pts, "end_time": end_time,
               "settings": settings}, file, indent=1)
  os.replace(path + ".tmp", path)


def remove_note(output: str) -> None:
  _remove(note_path(output))


def check_note_settings(output: str, note: dict, settings: dict) -> None:
  """ResumeError naming what differs between the stopped run's settings and these."""
  before = note["settings"]
  changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
  if changed:
    what = ", ".join(f"{k} was {before.get(k)!r}, now {settings.get(k)!r}" for k in changed)
    raise ResumeError(f"{output}: --resume needs the settings of the stopped run ({what}); "
                      "run it with those, or use --overwrite to start again")
