"""Network interpolation (ESRGAN paper, Sec. 3.4): blend a PSNR-oriented and a GAN generator.

  python -m esrgan_jax.interpolate --psnr CKPT_A --gan CKPT_B --alpha 0.8 -o OUT

theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN, parameter by parameter, trades the GAN
model's texture (and artefacts) against the PSNR model's smoothness without retraining. Both
generators must have one architecture and the same shapes (fine-tuning the GAN stage from the PSNR
stage keeps them), RRDBNet, Real-ESRGAN compact or SPAN (blended in its branch form);
the result is a generator checkpoint that the upscaler and eval mode read like any other.
"""

import math
import sys
from typing import Optional, Sequence

import jax
import numpy as np

from esrgan_jax import cli
from esrgan_jax.runtime import backends
from esrgan_jax.weights import generator, store, trees

PROG = "esrgan_jax.interpolate"


class InterpolationError(cli.UserError, ValueError):
  """The two parameter sets cannot be blended; the message says where they differ."""


def params_difference(first, second) -> Optional[str]:
  """A short description of how two parameter trees differ in structure or shapes, or None."""
  return trees.tree_difference(first, second)


def check_alpha(alpha: float) -> None:
  if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
    raise InterpolationError(f"alpha must lie in [0, 1], got {alpha}")


def interpolate_params(psnr_params, gan_params, alpha: float):
  """(1 - alpha) * psnr_params + alpha * gan_params, leaf by leaf, as NumPy arrays.

  Computed in float64 and returned in each leaf's dtype, so alpha = 0 and alpha = 1 give back the
  inputs bit for bit.
  """
  check_alpha(alpha)
  difference = params_difference(psnr_params, gan_params)
  if difference:
    raise InterpolationError(f"parameter trees differ: {difference}")

  def blend(psnr, gan):
    psnr, gan = np.asarray(psnr), np.asarray(gan)
    mixed = (1.0 - alpha) * psnr.astype(np.float64) + alpha * gan.astype(np.float64)
    return mixed.astype(psnr.dtype)

  return jax.tree.map(blend, psnr_params, gan_params)


def arch_difference(first: dict, second: dict) -> Optional[str]:
  """"field A vs B, ..." where two architecture records differ, or None; two architectures
  (RRDBNet, SRVGGNetCompact, SPAN) differ by their names alone."""
  names = generator.arch_name(first), generator.arch_name(second)
  if names[0] != names[1]:
    return f"arch {names[0]} vs {names[1]}"
  fields = [f for f in dict.fromkeys([*first, *second]) if first.get(f) != second.get(f)]
  if not fields:
    return None
  return ", ".join(f"{f} {first.get(f)} vs {second.get(f)}" for f in fields)


def interpolate_checkpoints(psnr_dir: str, gan_dir: str, alpha: float, output_dir: str) -> None:
  """Reads two generator checkpoints, blends them and writes the result to `output_dir`."""
  check_alpha(alpha)
  store.refuse_existing(output_dir, "output checkpoint directory")
  psnr_params, psnr_arch = generator.load_generator(psnr_dir)
  gan_params, gan_arch = generator.load_generator(gan_dir)
  difference = arch_difference(psnr_arch, gan_arch) or params_difference(psnr_params, gan_params)
  if difference:
    raise InterpolationError(f"{psnr_dir} (--psnr) and {gan_dir} (--gan) are different "
                             f"architectures: {difference}")
  generator.save_generator(output_dir, interpolate_params(psnr_params, gan_params, alpha),
                           psnr_arch)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = cli.argument_parser(
      PROG, "theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN (ESRGAN, Sec. 3.4).")
  parser.add_argument(*cli.flag("psnr"), required=True, metavar="CKPT_A",
                      help="generator checkpoint (or training workdir) of the PSNR-oriented stage")
  parser.add_argument(*cli.flag("gan"), required=True, metavar="CKPT_B",
                      help="generator checkpoint (or training workdir) of the GAN stage")
  parser.add_argument(*cli.flag("alpha"), required=True, type=float,
                      help="weight of the GAN model in [0, 1] (the paper shows 0.2 ... 1.0)")
  parser.add_argument(*cli.flag("output", "-o"), required=True, metavar="OUT",
                      help="new generator checkpoint directory (must not exist)")
  args = parser.parse_args(argv)

  def blend() -> str:
    interpolate_checkpoints(args.psnr, args.gan, args.alpha, args.output)
    return f"wrote {args.output}: {1 - args.alpha:g} * {args.psnr} + {args.alpha:g} * {args.gan}"

  backends.start_quietly()
  return cli.run(blend)


if __name__ == "__main__":
  sys.exit(main())
