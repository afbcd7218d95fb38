"""The training console's speed figures: images/s, TFLOP/s per device, MFU and the ETA."""

import time
from typing import Optional

import jax

from esrgan_jax.runtime import flops


def duration(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def flops_text(flops_per_step: Optional[float], num_devices: Optional[int] = None) -> str:
  """The step's FLOPs on all devices and, with several, each one's share (what MFU compares)."""
  if not flops_per_step:
    return "FLOPs unknown"
  num_devices = num_devices or jax.device_count()
  share = f", {flops_per_step / num_devices:.3e} per device" if num_devices > 1 else ""
  return f"{flops_per_step:.3e} FLOPs per step{share}"


class Throughput:
  """images/s, achieved FLOP/s and MFU over each logging interval (from the compiled step on).

  `flops_per_step` is the whole step's count on all devices (sharded_step.step_flops: the
  lowered program sees global shapes); each of the `num_devices` (default: all) does its share,
  which is what a device's peak is compared with.
  """

  def __init__(self, global_batch_size: int, flops_per_step: Optional[float], start_step: int,
               num_devices: Optional[int] = None):
    self._clock = time.perf_counter
    self._batch = global_batch_size
    self._flops = (flops_per_step / (num_devices or jax.device_count()) if flops_per_step
                   else None)  # per device
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
