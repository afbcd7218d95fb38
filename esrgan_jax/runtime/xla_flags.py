"""XLA flags that the benchmarks measured faster for ESRGAN, added unless the user set them.

XLA reads XLA_FLAGS when JAX creates its first backend, so `apply_defaults` must run before any
computation (importing jax is fine). A flag the user already names in XLA_FLAGS is left alone,
and ESRGAN_NO_DEFAULT_XLA_FLAGS=1 adds none. Every flag below is parsed by every jaxlib build
(CPU or GPU), and a build that does not know one aborts at start-up, so tests start the pinned
jaxlib with all of them.
"""

import os

DEFAULT_FLAGS = (
    # GPU: run cuDNN convolutions inside CUDA graphs too. The train steps are bound by kernel
    # launches (~5000 small kernels a step): 1.5x (psnr) and 2.2x (gan) on an H100,
    # benchmarks/RESULTS.md.
    "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONVOLUTION",
    # CPU: convolutions through XLA's own (Eigen) kernels, not YNNPACK's. YNNPACK's weight
    # gradient of a 3x3 conv is up to 12x slower (768 against 66 ms at 4x128x128x64), which made
    # the PSNR train step 2.1 to 2.6x slower than with this flag (benchmarks/RESULTS.md).
    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
)
OPT_OUT_VARIABLE = "ESRGAN_NO_DEFAULT_XLA_FLAGS"


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
