"""Sizes a Cloud TPU run before paying for it: compiles the config's train step for a TPU slice,
on this machine, and says whether it fits the chips' memory.

  python -m esrgan_jax.plan --config=CFG --topology=v5e:16x16 [--max_batch] [--config.X=...]

The step is the one training compiles (training/sharded_step.py: any stage, recipe and
architecture, with the on-device degradations and the pair pool), jitted over a mesh of the
slice's chips with the config's global batch split over them. libtpu compiles it ahead of time
on any machine, CPU included (runtime/tpu_plan.py); nothing runs, and no file the config names is
read. Printed: chips and hosts, the batch per chip, each chip's memory (arguments, outputs,
temporaries, code, total) against its HBM, FLOPs per step and per image, the compile time, and
the verdict. --max_batch finds the largest per-chip batch that fits instead, by compiling
doubling and then bisected batches.

A full-size config compiles in a few minutes on a small CPU, longer for large batches.
"""

import math
import sys
import time
from typing import NamedTuple, Optional, Sequence

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from esrgan_jax import cli, config_checks
from esrgan_jax.runtime import parallel, tpu_plan
from esrgan_jax.training import realworld_batch, sharded_step
from esrgan_jax.training.state import build_networks, state_initializer

EXIT_DOES_NOT_FIT = 3
EXIT_STATUS_HELP = (
    "exit status: 0 the config fits (with --max_batch: some per-chip batch fits); 3 it does not, "
    "with one line saying by how much; 1 an error, one line 'esrgan_jax: error: ...' naming the "
    "flag, field or file at fault (libtpu missing: how to install it); 2 a malformed command line.")


def parse_args(argv: Optional[Sequence[str]]):
  """(flags, --config.X overrides); argparse exits 2 on a malformed line."""
  parser = cli.argument_parser("esrgan_jax.plan", __doc__.split("\n\n")[0])
  parser.epilog = EXIT_STATUS_HELP  # plan's own status 3
  parser.add_argument("--config", required=True,
                      help="config file, optionally with a variant: configs/esrgan.py:demo; "
                           "--config.a.b=value flags override its fields, as for training")
  parser.add_argument("--topology", required=True,
                      help="the TPU slice: v5e:4x4, v4:2x2x4, ... (libtpu's names) or an "
                           "accelerator type: v5litepod-16, v6e-8, v4-32, v5p-32")
  parser.add_argument("--max_batch", action="store_true",
                      help="find the largest per-chip batch that fits (config.train.batch_size "
                           "is then chips x that batch)")
  parser.add_argument("--max_batch_limit", type=int, default=1024,
                      help="largest per-chip batch --max_batch tries (default 1024)")
  parser.add_argument("--hbm_gib", type=float, default=None,
                      help="GiB of HBM per chip to plan against instead of the chip's own (to "
                           "keep headroom)")
  args, rest = parser.parse_known_args(argv)
  unknown = [arg for arg in rest if not arg.startswith("--config.")]
  if unknown:
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
  return args, rest


def load_config(path: str, overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """The config file with its --config.X overrides, parsed as training parses them."""
  flag_values = flags.FlagValues()
  argv = ["plan", f"--config={path}", *overrides]
  # sys_argv: the overrides are found in the argv given, not in the process's sys.argv.
  config_flags.DEFINE_config_file("config", None, "config file", flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  try:
    flag_values(argv)
    # A file that failed to load raises only when its config is first read.
    return cli.loaded_config(argv, flag_values.config)
  except cli.UserError:
    raise
  except flags.Error as error:
    raise cli.UserError(cli.config_flag_error(argv, error)) from None
  except (AttributeError, KeyError) as error:
    raise cli.UserError(cli.config_lookup_error(argv, error)) from None
  except OSError as error:
    lines = [line.strip() for line in str(error).splitlines()]
    detail = next((line.split("] ", 1)[-1] for line in lines if "[Errno" in line), lines[0])
    raise cli.UserError(f"--config={path}: {detail}") from None
  except Exception as error:  # pylint: disable=broad-except; the config file's own code raised
    raise cli.UserError(cli.config_file_error(argv, error)) from None


def without_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy for config_checks with every file and folder field emptied: the plan opens none of
  them, so a config written for the pod's disks plans on any machine. The folder datasets
  become 'bundled' (their folders are their only fields); shapes do not depend on any of these."""
  config = config.copy_and_resolve_references()
  if config.data.dataset in ("folder", "prepared"):
    config.data.dataset = "bundled"
  config.data.eval_sets = ml_collections.ConfigDict()
  config.generator_init = ""
  config.loss.vgg19_weights = ""
  for name in ("checkpoint", "lpips_weights", "dists_weights", "niqe_params",
              "inception_weights"):
    config.eval[name] = ""
  return config


def checked(config: ml_collections.ConfigDict, chips: int, batch_size: int):
  """The config at this global batch, validated for `chips` devices (ConfigError if not)."""
  config = config.copy_and_resolve_references()
  config.train.batch_size = batch_size
  config_checks.validate(without_paths(config), chips, "train")
  return config


class Compiled(NamedTuple):
  memory: tpu_plan.Memory
  flops: Optional[float]  # per step, all chips (training's count)
  seconds: float
  executable: object  # the compiled step, for tests to compare with


def compile_step(config: ml_collections.ConfigDict, mesh) -> Compiled:
  """Compiles training's step for `mesh`; tpu_plan.OutOfMemory when the compiler refuses."""
  networks = build_networks(config)
  init_fn = state_initializer(networks, config, realworld_batch.pool_spec(config))
  sharding = sharded_step.state_sharding(init_fn, config, mesh)
  step = sharded_step.jit_train_step(networks, config, mesh, sharding)
  arguments = sharded_step.abstract_arguments(init_fn, config, mesh, sharding)
  start = time.perf_counter()
  executable = tpu_plan.compile_for_tpu(lambda: step.lower(*arguments),
                                        f"the {config.stage} step")
  seconds = time.perf_counter() - start
  # The count training logs its MFU with, which the TPU compile's own analysis (a loop's body
  # counted once, padding counted) would not match.
  return Compiled(tpu_plan.memory_of(executable),
                  sharded_step.step_flops(networks, config, arguments), seconds, executable)


class Slice(NamedTuple):
  topology: tpu_plan.Topology
  hosts: int
  device_kind: str
  hbm: int  # bytes per chip planned against
  hbm_source: str  # where that figure comes from
  mesh: object


def open_slice(args) -> Slice:
  topology = tpu_plan.parse_topology(args.topology)
  if args.hbm_gib is not None and not 0 < args.hbm_gib < math.inf:  # NaN too
    raise cli.UserError(f"--hbm_gib={args.hbm_gib}: must be a positive, finite number of GiB")
  devices = tpu_plan.devices(topology)
  hbm = int(args.hbm_gib * 2**30) if args.hbm_gib else topology.hbm_bytes
  source = "--hbm_gib" if args.hbm_gib else f"a {topology.generation} chip's HBM"
  return Slice(topology, len({d.process_index for d in devices}), devices[0].device_kind, hbm,
               source, parallel.create_mesh(devices))


def header_lines(config_path: str, config: ml_collections.ConfigDict, where: Slice) -> list[str]:
  chips, batch = where.topology.chips, config.train.batch_size
  model = config.model
  return [
      f"config    {config_path}: stage {config.stage}, {model.arch} x{model.scale}, patch "
      f"{config.data.patch_size}, {config.compute_dtype}, lr_source {config.data.lr_source}",
      f"slice     {where.topology.name}: {chips} chips ({where.device_kind}) on {where.hosts} "
      f"host(s), {tpu_plan.format_bytes(where.hbm)} of HBM per chip ({where.hbm_source})",
      f"batch     {batch} per step: {batch // chips} per chip, {batch // where.hosts} per host, "
      f"in {config.train.grad_accum_steps} micro-batch(es)",
  ]


def report_lines(config: ml_collections.ConfigDict, where: Slice, result: Compiled) -> list[str]:
  memory, size = result.memory, tpu_plan.format_bytes
  lines = [
      f"per chip  arguments {size(memory.arguments)}, outputs {size(memory.outputs)} "
      f"({size(memory.aliased)} of them in donated arguments), temporaries "
      f"{size(memory.temporaries)}, code {size(memory.code)}",
      f"          total {size(memory.total)} of {size(where.hbm)} "
      f"({memory.total / where.hbm:.0%})"]
  if result.flops:
    lines.append(f"FLOPs     {result.flops:.3e} per step "
                 f"({result.flops / where.topology.chips:.3e} per chip), "
                 f"{result.flops / config.train.batch_size:.3e} per image")
  lines.append(f"compile   {result.seconds:.1f} s")
  return lines


def verdict(result: Compiled, where: Slice) -> tuple[bool, str]:
  total, hbm, size = result.memory.total, where.hbm, tpu_plan.format_bytes
  if total <= hbm:
    return True, f"fits: {size(total)} of the {size(hbm)} per chip, {size(hbm - total)} to spare"
  return False, (f"does not fit: needs {size(total)} per chip, {size(total - hbm)} more than "
                 f"the {size(hbm)} of {where.hbm_source}")


def refusal(error: tpu_plan.OutOfMemory, where: Slice) -> str:
  """The line for the TPU compiler's own out-of-memory refusal."""
  if error.needed is None:
    return f"does not fit: the TPU compiler ran out of HBM: {error}"
  size = tpu_plan.format_bytes
  return (f"does not fit: the TPU compiler needs {size(error.needed)} per chip for temporaries, "
          f"{size(error.needed - error.available)} more than the {size(error.available)} it "
          f"leaves a {where.topology.generation} chip")


def say(line: str) -> None:
  print(line, flush=True)  # compiles take minutes: each line as soon as it is known


def plan_config(args, config) -> int:
  where = open_slice(args)
  chips = where.topology.chips
  config = checked(config, chips, config.train.batch_size)
  for line in header_lines(args.config, config, where):
    say(line)
  try:
    result = compile_step(config, where.mesh)
  except tpu_plan.OutOfMemory as error:
    say(refusal(error, where))
    return EXIT_DOES_NOT_FIT
  for line in report_lines(config, where, result):
    say(line)
  fits, line = verdict(result, where)
  say(line)
  return cli.EXIT_OK if fits else EXIT_DOES_NOT_FIT


def plan_max_batch(args, config) -> int:
  where = open_slice(args)
  chips = where.topology.chips
  candidates, first_error = [], None
  for per_chip in range(1, args.max_batch_limit + 1):
    try:
      checked(config, chips, per_chip * chips)
      candidates.append(per_chip)
    except cli.ConfigError as error:
      first_error = first_error or error
  if not candidates:
    raise cli.UserError(f"no per-chip batch up to --max_batch_limit={args.max_batch_limit} "
                        f"makes a valid config on {chips} chips: {first_error}")
  header = header_lines(args.config, checked(config, chips, candidates[0] * chips), where)
  for line in header[:2]:
    say(line)
  results = {}

  def fits(per_chip: int) -> bool:
    try:
      result = compile_step(checked(config, chips, per_chip * chips), where.mesh)
    except tpu_plan.OutOfMemory as error:
      say(f"per-chip batch {per_chip}: {refusal(error, where)}")
      return False
    results[per_chip] = result
    ok, line = verdict(result, where)
    say(f"per-chip batch {per_chip}: {line} ({result.seconds:.0f} s to compile)")
    return ok

  best = tpu_plan.largest(candidates, fits)
  if best is None:
    say(f"does not fit: not even a per-chip batch of {candidates[0]} fits")
    return EXIT_DOES_NOT_FIT
  best_config = checked(config, chips, best * chips)
  say(header_lines(args.config, best_config, where)[2])
  for line in report_lines(best_config, where, results[best]):
    say(line)
  note = (" (--max_batch_limit; raise it to look further)" if best == candidates[-1] else "")
  say(f"largest per-chip batch that fits: {best}{note}; --config.train.batch_size="
      f"{best * chips}, {tpu_plan.format_bytes(results[best].memory.total)} of "
      f"{tpu_plan.format_bytes(where.hbm)} per chip")
  return cli.EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = parse_args(argv)
  # The plan runs nothing: the CPU backend is all it opens, so it never takes the TPU of a
  # machine about to train on it (compiling for a topology needs no backend).
  jax.config.update("jax_platforms", "cpu")

  def action() -> int:
    if args.max_batch_limit < 1:
      raise cli.UserError(f"--max_batch_limit={args.max_batch_limit}: must be positive")
    config = load_config(args.config, overrides)
    return (plan_max_batch if args.max_batch else plan_config)(args, config)
  return cli.run(action, stopped="; nothing was written")


if __name__ == "__main__":
  sys.exit(main())
