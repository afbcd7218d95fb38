"""Models side by side: what a MODEL argument names, run on one set of LR images, and scored.

A MODEL is a training workdir (its newest readable step), `WORKDIR@STEP`, a generator checkpoint
directory (esrgan_jax.convert / interpolate), or a .pth / .safetensors file, of any architecture
(RRDBNet, SRVGGNetCompact, SPAN). Every model, and MATLAB bicubic as the baseline row, runs on the
same LR images through evaluation's own path (`evaluate.super_resolve`, the one jitted apply), so
a row here is what evaluation would measure. The scores come from whoever calls (`score_set`): the
compare command passes the metrics command's registry, which the libraries may not import.
"""

import dataclasses
import os
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from etils import epath

from esrgan_jax import cli
from esrgan_jax.data import bicubic
from esrgan_jax.evaluation import evaluate
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights

WEIGHT_FILE_EXTENSIONS = (".pth", ".safetensors")
BICUBIC = "bicubic"


class ModelSpecError(cli.UserError, ValueError):
  """A MODEL argument that names nothing loadable; the message names it."""


@dataclasses.dataclass
class Candidate:
  """One row of the comparison before it runs."""
  name: str  # short label for tables and plots
  checkpoint: str  # the MODEL argument as given
  arch: Optional[dict]  # None for bicubic
  params: Any = None  # as the checkpoint holds them (SPAN: branch form)
  workdir: Optional[str] = None  # a training workdir's root: its event files give the curves
  step: Optional[int] = None
  alpha: Optional[float] = None  # an interpolation sweep's GAN weight


def _split_step(spec: str) -> tuple[str, Optional[int]]:
  """`DIR@STEP` -> (DIR, STEP); a path that exists as written is taken whole."""
  path, at, step = spec.rpartition("@")
  if at and step.isdigit() and not os.path.exists(spec):
    return path, int(step)
  return spec, None


def _workdir_of(source: epath.Path) -> Optional[str]:
  """The training workdir a step directory (WORKDIR/checkpoints/N) belongs to, else None."""
  if source.name.isdigit() and source.parent.name == checkpoints.CHECKPOINT_SUBDIR:
    return os.fspath(source.parent.parent)
  return None


def resolve(spec: str) -> Candidate:
  """Loads a MODEL argument; ModelSpecError (one line naming it) when it is none of the kinds."""
  path, step = _split_step(spec)
  try:
    if os.path.isfile(path) and path.lower().endswith(WEIGHT_FILE_EXTENSIONS) and step is None:
      params, arch = generator_weights.load_generator_from_torch(path)
      return Candidate(os.path.splitext(os.path.basename(path))[0], spec, arch, params)
    if not os.path.isdir(path):
      raise ModelSpecError(
          f"MODEL {spec}: neither a training workdir (or WORKDIR@STEP), a generator checkpoint "
          f"directory nor a {' / '.join(WEIGHT_FILE_EXTENSIONS)} file")
    if step is not None:
      try:
        path = os.fspath(checkpoints.find_step_directory(path, step))
      except FileNotFoundError as error:
        raise ModelSpecError(f"MODEL {spec}: {error}") from None
    params, arch, source = generator_weights.load_generator_and_source(path)
  except generator_weights.CheckpointError as error:
    raise ModelSpecError(f"MODEL {spec}: {error}") from None
  workdir = _workdir_of(source)
  if workdir is None:
    return Candidate(os.path.basename(os.path.normpath(path)), spec, arch, params)
  step = int(source.name)
  name = f"{os.path.basename(os.path.normpath(workdir))}@{step}"
  return Candidate(name, spec, arch, params, workdir=workdir, step=step)


def unique_names(candidates: Sequence[Candidate]) -> None:
  """Labels that repeat (two workdirs called `run`) get ' (2)', ' (3)', ... in place."""
  seen: dict[str, int] = {}
  for candidate in candidates:
    count = seen.get(candidate.name, 0) + 1
    seen[candidate.name] = count
    if count > 1:
      candidate.name = f"{candidate.name} ({count})"


def parameter_count(params) -> int:
  return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def common_scale(candidates: Sequence[Candidate]) -> int:
  """The one scale of all models; ModelSpecError naming two that differ."""
  first = candidates[0]
  for candidate in candidates[1:]:
    if candidate.arch["scale"] != first.arch["scale"]:
      raise ModelSpecError(
          f"MODEL {candidate.checkpoint} is x{candidate.arch['scale']} but "
          f"{first.checkpoint} is x{first.arch['scale']}: models compared on one set must share "
          "a scale")
  return int(first.arch["scale"])


@dataclasses.dataclass
class Result:
  """One row after it ran: its outputs' scores and speed."""
  candidate: Candidate
  means: dict[str, float]  # per-image metrics' means, then set metrics (fid, kid, is, ...)
  per_image: dict[str, dict[str, float]]
  seconds_per_mp: float  # of output pixels, compile time left out
  kept: list  # the SR outputs of the first `keep` images (for the crops)

  @property
  def params(self) -> Optional[int]:
    """The generator's parameter count (as its checkpoint holds them); None for bicubic."""
    if self.candidate.arch is None:
      return None
    return parameter_count(self.candidate.params)


def _upscaler(candidate: Candidate, scale: int, tile: int, tile_pad: int
              ) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 LR -> uint8 SR for a candidate, as evaluation runs it (SPAN folded)."""
  if candidate.arch is None:
    return lambda lr: bicubic.imresize(lr, output_shape=(lr.shape[0] * scale,
                                                         lr.shape[1] * scale))
  generator = generator_weights.generator_from_arch(candidate.arch)
  generate_fn = evaluate.make_generate_fn(generator, candidate.params)
  multiple = evaluate.input_multiple(generator)
  return lambda lr: evaluate.super_resolve(generate_fn, lr, scale, tile, tile_pad, multiple)


# (architecture record, LR shape) pairs already compiled in this process: their first run is
# not timed, so seconds_per_mp measures the network, not XLA's compiler.
_COMPILED: set = set()


def run_candidate(candidate: Candidate, eval_images, scale: int, tile: int, tile_pad: int,
                  score_set: Callable, keep: int,
                  write: Optional[Callable[[str, np.ndarray], None]] = None) -> Result:
  """Super-resolves every image with `candidate` and scores the set.

  `score_set(pairs) -> (per_image {name: {metric: value}}, set values)` gets the list of
  (name, sr uint8, hr uint8); `write(name, sr)` (optional) saves each output.
  """
  upscale = _upscaler(candidate, scale, tile, tile_pad)
  pairs, kept, seconds, pixels = [], [], 0.0, 0
  for index, item in enumerate(eval_images):
    key = (repr(sorted((candidate.arch or {}).items())), item.lr.shape, tile, tile_pad)
    if candidate.arch is not None and key not in _COMPILED:
      upscale(item.lr)
      _COMPILED.add(key)
    start = time.perf_counter()
    sr = upscale(item.lr)
    seconds += time.perf_counter() - start
    pixels += sr.shape[0] * sr.shape[1]
    if sr.shape != item.hr.shape:
      raise ModelSpecError(f"MODEL {candidate.checkpoint}: output of {item.name} is "
                           f"{sr.shape[1]}x{sr.shape[0]}, HR is {item.hr.shape[1]}x"
                           f"{item.hr.shape[0]} (width x height)")
    if write is not None:
      write(item.name, sr)
    if index < keep:
      kept.append(sr)
    pairs.append((item.name, sr, item.hr))
  per_image, set_values = score_set(pairs)
  names = list(next(iter(per_image.values())))
  means = {m: float(np.mean([row[m] for row in per_image.values()])) for m in names}
  return Result(candidate, {**means, **set_values}, per_image, seconds / (pixels / 1e6), kept)
