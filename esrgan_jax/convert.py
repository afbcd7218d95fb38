"""The one converter command: PyTorch weights in, esrgan_jax weights out, and generators back.

  python -m esrgan_jax.convert IN.pth OUT_DIR                      generator -> checkpoint dir
  python -m esrgan_jax.convert --export CKPT_DIR OUT.pth           generator -> .pth
  python -m esrgan_jax.convert --export CKPT_DIR OUT.safetensors   generator -> .safetensors
  python -m esrgan_jax.convert --export CKPT_DIR OUT.onnx [--half] generator -> ONNX graph
  python -m esrgan_jax.convert --vgg19 vgg19.pth OUT_DIR           torchvision VGG19 (loss)
  python -m esrgan_jax.convert --lpips alex LIN.pth OUT_DIR --backbone alexnet.pth  (LPIPS)
  python -m esrgan_jax.convert --dists weights.pt OUT_DIR --backbone vgg16.pth     (DISTS)
  python -m esrgan_jax.convert --discriminator net_d.pth OUT_DIR   BasicSR / Real-ESRGAN net_d

Generators are RRDBNet (ESRGAN / BasicSR / Real-ESRGAN, three key layouts), Real-ESRGAN's
SRVGGNetCompact (realesr-animevideov3, realesr-general-x4v3) and SPAN (spandrel's files), read from
.pth or .safetensors; the keys tell which. An .onnx export is the network itself (opset 17, input
"input" and output "output", NCHW RGB in [0, 1], symbolic batch, height and width; float32, or
float16 input, output and weights with --half). It has no state-dict wrapper or key layout, so
--export_key and --export_layout are refused with it, as --half is with any other export. The
work lives in `esrgan_jax/weights/`, one module per network; this file only parses flags.
Another network is one more `Mode` in `MODES`.
"""

import argparse
import os
import sys
from typing import Callable, NamedTuple, Sequence

from esrgan_jax import cli
from esrgan_jax.models.lpips import NETS as LPIPS_NETS
from esrgan_jax.models.srvgg import ACT_TYPES
from esrgan_jax.runtime import backends
from esrgan_jax.weights import dists, discriminators, generator, inception, lpips, onnx_export
from esrgan_jax.weights import vgg19
from esrgan_jax.weights.torch_io import WRAPPER_KEYS

PROG = "esrgan_jax.convert"
# --export: the format is the suffix's (.pt is PyTorch's other name for a .pth pickle).
EXPORT_SUFFIXES = (".pth", ".pt", ".safetensors", ".onnx")


class Mode(NamedTuple):
  """One kind of conversion: its flag, its help, and what it does with SOURCE and DESTINATION."""
  name: str
  run: Callable[[argparse.Namespace], str]  # converts and returns what was written
  help: str
  choices: tuple[str, ...] | None = None  # the flag takes one of these values (else none)


def _generator_name(arch) -> str:
  """The record as a constructor call, the form every mode prints, without a key layout where
  none is involved (a checkpoint, an ONNX graph)."""
  if generator.arch_name(arch) == generator.rrdbnet.ARCH_NAME:
    return generator.rrdbnet.describe(arch)
  return generator.describe(arch)


def _import_generator(args) -> str:
  arch = generator.convert_generator(args.source, args.destination, args.weights_key, args.scale,
                                     args.act_type)
  return _generator_name(arch)


def _export_generator(args) -> str:
  wrap_key = {None: generator.DEFAULT_WRAP, "none": None}.get(args.export_key, args.export_key)
  arch = generator.export_generator(args.source, args.destination, wrap_key, args.export_layout,
                                    args.generator, args.half)
  if onnx_export.is_onnx_path(args.destination):
    dtype = "float16" if args.half else "float32"
    return (f"{_generator_name(arch)} as ONNX opset {onnx_export.OPSET}, {dtype} "
            f"'{onnx_export.INPUT_NAME}' -> '{onnx_export.OUTPUT_NAME}'")
  return generator.describe(arch, args.export_layout)


def _vgg19(args) -> str:
  vgg19.convert_vgg19(args.source, args.destination)
  return "VGG19 features conv1_1 ... conv5_4"


def _lpips(args) -> str:
  lpips.convert_lpips(args.lpips, args.source, args.backbone, args.destination)
  return f"LPIPS-{args.lpips} v{lpips.VERSION}"


def _dists(args) -> str:
  dists.convert_dists(args.source, args.backbone, args.destination)
  return f"DISTS v{dists.VERSION}"


def _inception(args) -> str:
  inception.convert_inception(args.source, args.destination)
  return "the FID InceptionV3 (pt_inception-2015-12-05)"


def _discriminator(args) -> str:
  name, arch = discriminators.convert_discriminator(args.source, args.destination,
                                                    args.weights_key)
  return f"{name} discriminator {arch}"


MODES = (
    Mode("export", _export_generator,
         help="SOURCE is a generator checkpoint or training workdir; DESTINATION a .pth or "
              ".safetensors in the architecture's PyTorch key names (RRDBNet: BasicSR's; see "
              "--export_key, --export_layout, --generator), or a .onnx graph of the network "
              "(opset 17, 'input' -> 'output', NCHW in [0, 1]; see --half)"),
    Mode("vgg19", _vgg19,
         help="SOURCE is torchvision's vgg19 .pth; write VGG19 params for the perceptual loss "
              "(config.loss.vgg19_weights)"),
    Mode("lpips", _lpips, choices=LPIPS_NETS,
         help="SOURCE is the lpips package's lpips/weights/v0.1/NET.pth (or a full LPIPS "
              "state_dict); write LPIPS weights for config.eval.lpips_weights"),
    Mode("dists", _dists,
         help="SOURCE is the dists-pytorch package's DISTS_pytorch/weights.pt (alpha and beta; "
              "or a full DISTS state_dict); write DISTS weights for config.eval.dists_weights"),
    Mode("inception", _inception,
         help="SOURCE is pytorch-fid's pt_inception-2015-12-05-6726825d.pth; write the FID "
              "InceptionV3 for FID/KID/IS"),
    Mode("discriminator", _discriminator,
         help="SOURCE is a BasicSR VGG-style or Real-ESRGAN U-Net net_d .pth (e.g. "
              "RealESRGAN_x4plus_netD.pth); write both its collections for fine-tuning"),
)


def _parser() -> argparse.ArgumentParser:
  parser = cli.argument_parser(
      PROG, "Convert ESRGAN / BasicSR / Real-ESRGAN PyTorch weights to esrgan_jax weights, or "
            "export a generator back to a .pth, .safetensors or ONNX graph. Without a mode flag, "
            "SOURCE is a generator .pth or .safetensors (RRDBNet, Real-ESRGAN compact or SPAN) and "
            "DESTINATION a new generator checkpoint directory.")
  parser.add_argument("source", help="IN.pth or IN.safetensors, or CKPT_DIR with --export")
  parser.add_argument("destination", help="OUT_DIR (must not exist), or OUT.pth / "
                                          "OUT.safetensors / OUT.onnx with --export")
  group = parser.add_mutually_exclusive_group()
  for mode in MODES:
    if mode.choices:
      group.add_argument(*cli.flag(mode.name), choices=mode.choices, default=None,
                         metavar="NET",
                         help=f"{mode.help}; NET is one of {', '.join(mode.choices)}")
    else:
      group.add_argument(*cli.flag(mode.name), action="store_true", help=mode.help)
  parser.add_argument(*cli.flag("weights_key"), choices=WRAPPER_KEYS, default=None,
                      help="entry of a BasicSR checkpoint to read (default: params_ema if "
                           "present, else params)")
  parser.add_argument(*cli.flag("scale"), type=int, choices=sorted(generator.SCALE_CHANNEL_FOLD),
                      default=None, help="generator scale, when conv_first cannot tell it")
  parser.add_argument(*cli.flag("act_type"), choices=ACT_TYPES, default=None,
                      help="activation of a Real-ESRGAN compact file without PReLU slopes "
                           "(its keys cannot tell relu from leakyrelu)")
  parser.add_argument(*cli.flag("export_key"), choices=(*WRAPPER_KEYS, "none"), default=None,
                      help="with --export to a .pth or .safetensors: wrap the state dict under "
                           "this key ('none': bare; default: params for a .pth, bare for a "
                           ".safetensors)")
  parser.add_argument(*cli.flag("export_layout"), choices=generator.LAYOUTS, default=None,
                      help="with --export of an RRDBNet to a .pth or .safetensors: key names to "
                           "write (default basicsr)")
  parser.add_argument(*cli.flag("half"), action="store_true",
                      help="with --export to a .onnx: write a float16 model (float16 input, "
                           "output, weights and arithmetic: half the file size, and faster where "
                           "the runtime and device have float16 kernels; outputs keep about 3 "
                           "significant digits)")
  parser.add_argument(*cli.flag("generator"), choices=generator.WHICH,
                      default=generator.WHICH[0],
                      help="with --export from a training workdir: which generator to write")
  parser.add_argument(*cli.flag("backbone"), default=None,
                      help="with --lpips: torchvision's ImageNet alexnet or vgg16 .pth "
                           "(features.N.* keys); not needed with a full LPIPS state_dict. With "
                           "--dists: torchvision's vgg16 .pth; not needed with a full DISTS "
                           "state_dict")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  chosen = [mode for mode in MODES if getattr(args, mode.name) not in (None, False)]
  if args.backbone is not None and not (chosen and chosen[0].name in ("lpips", "dists")):
    parser.error("--backbone goes with --lpips or --dists")
  suffix = os.path.splitext(args.destination)[1].lower()
  if args.export and suffix not in EXPORT_SUFFIXES:  # the suffix picks the format: never guess
    parser.error(f"--export writes {', '.join(EXPORT_SUFFIXES)}; {args.destination!r} has "
                 f"{suffix or 'no suffix'}")
  to_onnx = bool(args.export) and onnx_export.is_onnx_path(args.destination)
  if args.half and not to_onnx:
    parser.error("--half goes with --export to a .onnx file")
  if to_onnx and (args.export_key is not None or args.export_layout is not None):
    parser.error("--export_key and --export_layout are for .pth / .safetensors exports; an ONNX "
                 "model has no state-dict wrapper or key layout")
  run = chosen[0].run if chosen else _import_generator
  backends.start_quietly()
  return cli.run(lambda: f"wrote {args.destination}: {run(args)}")


if __name__ == "__main__":
  sys.exit(main())
