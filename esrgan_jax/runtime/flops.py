"""FLOPs of a jitted program and the devices' peak rates: the one source of MFU figures.

FLOPs come from XLA's cost analysis of the program as lowered (HloCostAnalysis before XLA's
passes), not as compiled: on GPU the compiled module holds convolutions as cuDNN custom calls,
which the compiled cost analysis leaves out, so an MFU from it would miss most of the work of a
convolutional network. The count is 2 per multiply-add of every convolution and dot over the taps
that touch the image (zero padding is not counted), plus one per element of elementwise and
reduction ops.
"""

from typing import Any, Optional

import jax

# Dense tensor-core peaks per device (TFLOP/s): (bf16, tf32), from the vendors' datasheets (SXM
# parts for NVIDIA). TPUs have no TF32 mode: float32 matmuls run as bf16 passes.
PEAK_TFLOPS = {
    "NVIDIA H100": (989.0, 494.5),
    "NVIDIA H200": (989.0, 494.5),
    "NVIDIA A100": (312.0, 156.0),
    "TPU v4": (275.0, None),
    "TPU v5 lite": (197.0, None),
    "TPU v5p": (459.0, None),
    "TPU v6 lite": (918.0, None),
}


def lowered_flops(lowered) -> Optional[float]:
  """XLA's FLOP count of a `jitted.lower(...)` result; None where the backend has no analysis."""
  try:
    analysis = lowered.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    return None
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per executable
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


def flops_of(jitted, *args: Any, **kwargs: Any) -> Optional[float]:
  """FLOPs of one call of `jitted` on these arguments (arrays or ShapeDtypeStructs)."""
  return lowered_flops(jitted.lower(*args, **kwargs))


def peak_tflops(device_kind: str) -> Optional[tuple[float, Optional[float]]]:
  """(bf16, tf32) dense peaks in TFLOP/s of a device kind ('NVIDIA H200', 'TPU v4', ...)."""
  for name, peaks in PEAK_TFLOPS.items():
    if name in device_kind:
      return peaks
  return None


def peak_flops_per_device(device: Optional[jax.Device] = None) -> Optional[float]:
  """The dense bf16 peak in FLOP/s of `device` (default: the first device), None if unknown."""
  device = device or jax.devices()[0]
  peaks = peak_tflops(device.device_kind)
  return peaks[0] * 1e12 if peaks else None


def mfu(flops_per_step: Optional[float], steps_per_second: float,
        peak_flops: Optional[float]) -> Optional[float]:
  """Model FLOP utilisation of one device: achieved over peak FLOP/s."""
  if not flops_per_step or not peak_flops:
    return None
  return flops_per_step * steps_per_second / peak_flops
