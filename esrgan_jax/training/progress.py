"""The training console's speed figures: images/s, TFLOP/s per device, MFU and the ETA."""

import time
from typing import Optional

from esrgan_jax.runtime import flops


def duration(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Throughput:
  """images/s, achieved FLOP/s and MFU over each logging interval (from the compiled step on)."""

  def __init__(self, global_batch_size: int, flops_per_step: Optional[float], start_step: int):
    self._clock = time.perf_counter
    self._batch = global_batch_size
    self._flops = flops_per_step
    self._peak = flops.peak_flops_per_device()
    self.restart(start_step)

  def restart(self, step: int) -> None:
    """Starts the next interval at `step`, now."""
    self._last_step, self._last_time = step, self._clock()

  def update(self, step: int) -> dict[str, float]:
    now = self._clock()
    out = {}
    if step > self._last_step and now > self._last_time:
      steps_per_s = (step - self._last_step) / (now - self._last_time)
      out["perf/images_per_s"] = steps_per_s * self._batch
      if self._flops:
        out["perf/tflops_per_s_per_device"] = self._flops * steps_per_s / 1e12
        utilisation = flops.mfu(self._flops, steps_per_s, self._peak)
        if utilisation is not None:
          out["perf/mfu"] = utilisation
    self._last_step, self._last_time = step, now
    return out
