"""inference/video.py as a library: memory that does not grow with the video, the batch boundary
a stop waits for, the stop flag, and what a stopped output keeps of the other streams."""

import signal
import tracemalloc

import numpy as np
import pytest

from esrgan_jax.inference import tiling, video, video_decode, video_encode, video_mux
from esrgan_jax.data.images import to_pixels
from esrgan_jax.inference.apply import apply_generator, to_uint8
from esrgan_jax.models.srvgg import SRVGGNetCompact
from tests.tiny_generator import random_params
from tests.video_clips import decoded, make_clip, packets

FFV1 = video.VideoOptions(video_encode.EncodeSettings("ffv1", None, None, None), resume=False,
                          overwrite=True, settings={})


@pytest.fixture(scope="module")
def upscaler():
  model = SRVGGNetCompact(num_feat=8, num_conv=3, upscale=4)
  params = random_params(model, seed=1)
  return video.video_upscaler(lambda batch: apply_generator(model, params, batch), 4, None,
                              tile=0, tile_pad=0, batch_size=4, multiple=1)


def test_peak_memory_does_not_grow_with_the_number_of_frames(tmp_path, upscaler):
  height, width = 48, 64
  out_frame = height * 4 * width * 4 * 3  # bytes of one upscaled frame
  peaks = {}
  for count in (16, 16, 80):  # the first run compiles
    make_clip(tmp_path / f"clip{count}.mkv", count=count, height=height, width=width)
    tracemalloc.start()
    video.upscale_video(str(tmp_path / f"clip{count}.mkv"), str(tmp_path / f"out{count}.mkv"),
                        upscaler, FFV1, video.stop_signals())
    peaks[count] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(decoded(tmp_path / f"out{count}.mkv")) == count
  # 64 more frames would hold 64 x 147 KB more if anything kept them. What a run holds at its peak
  # otherwise depends on timing, not length: under load the writer's queue (a batch, 4 frames) may
  # fill in one run and stay empty in the other, as may the batch being upscaled and the encoder's.
  assert peaks[80] < peaks[16] + (4 + 4 + 2) * out_frame, peaks
  assert peaks[16] < 40 * out_frame, peaks


def test_batcher_counts_windows_waiting_for_a_batch():
  calls = []
  batcher = tiling.Batcher(lambda batch: calls.append(len(batch)) or batch, batch_size=3)
  for i in range(4):
    batcher.submit(np.zeros((2, 2, 3), np.float32), lambda result: None)
    assert batcher.waiting == (i + 1) % 3
  batcher.flush()
  assert batcher.waiting == 0 and calls == [3, 1]


def test_stop_signals_set_a_flag_and_a_second_ctrl_c_raises():
  with video.stop_signals() as stop:
    assert not stop.requested
    signal.raise_signal(signal.SIGINT)
    assert stop.requested and stop.signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
      signal.raise_signal(signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  with video.stop_signals() as stop:
    signal.raise_signal(signal.SIGTERM)
    assert stop.stopped(" now").status == 143


def test_a_stopped_output_keeps_the_other_streams_up_to_its_last_frame(tmp_path):
  make_clip(tmp_path / "clip.mkv", count=24, subtitles=True)
  info = video_decode.probe(str(tmp_path / "clip.mkv"))
  video_mux.assemble(str(tmp_path / "part.mkv"), [str(tmp_path / "clip.mkv")], info,
                     end_time=0.5)
  audio = packets(tmp_path / "part.mkv", "audio")
  every = packets(tmp_path / "clip.mkv", "audio")
  assert audio == [p for p in every if p[1] < 0.5] and len(audio) < len(every)
  assert packets(tmp_path / "part.mkv", "subtitle") == [(b"bonjour", 0.01), (b"au revoir", 0.484)]
  video_mux.assemble(str(tmp_path / "part.mkv"), [str(tmp_path / "clip.mkv")], info,
                     end_time=0.3)
  assert packets(tmp_path / "part.mkv", "subtitle") == [(b"bonjour", 0.01)]


def test_pixels_rounded_on_the_device_equal_the_host_rule():
  rng = np.random.RandomState(0)
  values = np.concatenate([rng.uniform(-0.2, 1.2, 10000),
                           (np.arange(256) + 0.5) / 255,  # halfway cases: ties to even
                           [0.0, 1.0, -1e9, 1e9]]).astype(np.float32)
  assert np.array_equal(np.asarray(to_uint8(values)), to_pixels(values, np.uint8))
