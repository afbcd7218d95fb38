"""Short synthetic video clips for the video tests: a bundled photo panned over N frames, with
variable frame durations, an audio track and optionally subtitles, rotation and colour tags."""

from fractions import Fraction

import av
import numpy as np
import skimage.data

MS = Fraction(1, 1000)
DURATIONS_MS = (30, 50, 41)  # a variable frame rate: the timestamps must survive exactly


def panned_frames(count: int, height: int = 24, width: int = 32) -> list[np.ndarray]:
  photo = skimage.data.astronaut()
  return [np.ascontiguousarray(photo[100 + 3 * i:100 + 3 * i + height,
                                     150 + 2 * i:150 + 2 * i + width]) for i in range(count)]


def frame_times_ms(count: int) -> list[int]:
  return [sum(DURATIONS_MS[j % 3] for j in range(i)) for i in range(count)]


def make_clip(path, count: int = 24, height: int = 24, width: int = 32, codec: str = "ffv1",
              pix_fmt: str = "bgr0", audio: bool = True, subtitles: bool = False,
              rotation=None, colour=None, sample_aspect_ratio=None) -> list[np.ndarray]:
  """Writes the clip and returns its frames (RGB, as written: exact for ffv1 bgr0).

  Frame i starts at frame_times_ms(count)[i]; the audio is a tone as long as the video;
  subtitles: two SubRip lines; colour: (range, space, primaries, trc) tags of the video;
  sample_aspect_ratio: the pixels' shape (anamorphic video).
  """
  frames = panned_frames(count, height, width)
  times = frame_times_ms(count)
  out = av.open(str(path), "w")
  video = out.add_stream(codec, rate=24)
  video.width, video.height, video.pix_fmt = width, height, pix_fmt
  video.codec_context.time_base = MS
  if rotation is not None:
    video.set_display_rotation(rotation)
  if sample_aspect_ratio is not None:
    video.codec_context.sample_aspect_ratio = sample_aspect_ratio
  if colour is not None:
    context = video.codec_context
    context.color_range, context.colorspace, context.color_primaries, context.color_trc = colour
  sound = out.add_stream("aac", rate=8000, layout="mono") if audio else None
  text = None
  if subtitles:
    text = out.add_mux_stream("subrip")
    text.time_base = MS
    text.metadata["language"] = "fra"
  for pixels, time_ms in zip(frames, times):
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    if colour is not None:
      frame = frame.reformat(format=pix_fmt, dst_colorspace=colour[1],
                             dst_color_range=colour[0])
    frame.pts, frame.time_base = time_ms, MS
    for packet in video.encode(frame):
      out.mux(packet)
  for packet in video.encode():
    out.mux(packet)
  end_ms = times[-1] + DURATIONS_MS[(count - 1) % 3]
  if sound is not None:
    samples = 8 * end_ms
    for first in range(0, samples, 1024):
      tone = np.sin(np.arange(first, min(first + 1024, samples)) / 7.0)[None]
      chunk = av.AudioFrame.from_ndarray(tone.astype(np.float32), format="fltp", layout="mono")
      chunk.sample_rate, chunk.pts = 8000, first
      for packet in sound.encode(chunk):
        out.mux(packet)
    for packet in sound.encode():
      out.mux(packet)
  if text is not None:
    for start, line in ((10, b"bonjour"), (end_ms // 2, b"au revoir")):
      packet = av.Packet(line)
      packet.stream, packet.pts, packet.dts, packet.duration = text, start, start, 60
      packet.time_base = MS
      out.mux(packet)
  out.close()
  return frames


def decoded(path) -> list[tuple[float, np.ndarray]]:
  """(start time in seconds, RGB pixels) of every frame of the file's video stream."""
  with av.open(str(path)) as container:
    return [(float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24"))
            for frame in container.decode(container.streams.video[0])]


def packets(path, kind: str) -> list[tuple[bytes, float]]:
  """(payload, start time in seconds) of every packet of the file's streams of `kind`."""
  with av.open(str(path)) as container:
    streams = [s for s in container.streams if s.type == kind]
    return [(bytes(p), float(p.pts * p.time_base)) for p in container.demux(*streams) if p.size]
