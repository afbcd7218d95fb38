"""XLA flags that the benchmarks measured faster for ESRGAN, added unless the user set them.

XLA reads XLA_FLAGS when JAX creates its first backend, so `apply_defaults` must run before any
computation (importing jax is fine). A flag the user already names in XLA_FLAGS is left alone,
and ESRGAN_NO_DEFAULT_XLA_FLAGS=1 adds none. Every flag below is parsed by every jaxlib build
(CPU or GPU), and a build that does not know one aborts at start-up, so tests start the pinned
jaxlib with all of them.
"""

import os

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
DEFAULT_FLAGS = (
    # GPU: run cuDNN convolutions inside CUDA graphs too. The train steps are bound by kernel
    # launches (~5000 small kernels a step): 1.5x (psnr) and 2.2x (gan) on an H100,
    # benchmarks/RESULTS.md.
    "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONVOLUTION",
    # CPU: convolutions through XLA's own (Eigen) kernels, not YNNPACK's. YNNPACK's weight
    # gradient of a 3x3 conv is up to 12x slower (768 against 66 ms at 4x128x128x64), which made
    # the PSNR train step 2.1 to 2.6x slower than with this flag (benchmarks/RESULTS.md).
    f"{YNN_FUSION_FLAG}=-individual_convolution",
)
OPT_OUT_VARIABLE = "ESRGAN_NO_DEFAULT_XLA_FLAGS"
# One compiled program's options that give back XLA:CPU's own library fusions (its defaults in the
# pinned jaxlib: YNNPACK for single dots, single convolutions and reductions) where the default
# flag above took the convolutions away. For forward-only programs of plain conv stacks: the weight
# gradients that flag is for are not in them, and YNNPACK's forward 3x3 convolutions beat XLA's
# Eigen ones there (SRVGGNetCompact inference 1.06-1.13x, benchmarks/RESULTS.md).
LIBRARY_CONVOLUTIONS = {YNN_FUSION_FLAG[2:]: ",".join(
    f"LIBRARY_FUSION_TYPE_{kind}" for kind in ("INDIVIDUAL_DOT", "INDIVIDUAL_CONVOLUTION",
                                               "REDUCE"))}


def flag_name(flag: str) -> str:
  return flag.split("=", 1)[0]


def with_defaults(xla_flags: str) -> str:
  """`xla_flags` followed by each default flag whose name it does not already set."""
  named = {flag_name(flag) for flag in xla_flags.split()}
  added = [flag for flag in DEFAULT_FLAGS if flag_name(flag) not in named]
  return " ".join(xla_flags.split() + added)


def apply_defaults() -> None:
  if os.environ.get(OPT_OUT_VARIABLE, "") not in ("", "0"):
    return
  os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))


def library_convolutions_taken_away() -> bool:
  """Whether this process runs XLA_FLAGS' YNNPACK setting as the default above set it: then a
  forward-only program may take LIBRARY_CONVOLUTIONS; a user's own setting (or none) stands."""
  return _ynn_settings()[-1:] == [f for f in DEFAULT_FLAGS if flag_name(f) == YNN_FUSION_FLAG]


def convolutions_taken_away() -> bool:
  """Whether XLA_FLAGS' last YNNPACK setting (the default above's, or the user's) takes XLA:CPU's
  YNNPACK convolutions away, leaving them to its Eigen kernels."""
  settings = _ynn_settings()
  return bool(settings) and "-individual_convolution" in settings[-1].split("=", 1)[-1].split(",")


def _ynn_settings() -> list[str]:
  """XLA_FLAGS' YNNPACK fusion settings, in order (the last one counts)."""
  return [flag for flag in os.environ.get("XLA_FLAGS", "").split()
          if flag_name(flag) == YNN_FUSION_FLAG]
