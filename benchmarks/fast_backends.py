"""The frameworks that benchmarks/fast_models.py times, one builder function per backend.

A backend is one entry of BACKENDS: its variant names and a function
`build(args, model, variants) -> {variant: Variant}` that makes each variant ready to time. A
variant's `forward` (NHWC float32 image in, NHWC output out, at full precision) is what the
agreement check compares against jax:float32; a variant without one (jax:bfloat16) is timed but
not checked. Adding a backend (as onnxruntime was) is one more such function and one more entry.
Also here: the random weights every backend loads, and the PyTorch modules they fill.
"""

import copy
import dataclasses
import platform
import re
import time
from typing import Any, Callable, Optional

import numpy as np

from benchmarks.common import SCALE, progress

PRELU_SLOPE = 0.25  # torch.nn.PReLU's init


@dataclasses.dataclass
class Model:
  """One network of the benchmark, its weights and the input every backend runs."""
  network: str  # "rrdbnet", "srvgg" or "span"
  options: dict  # the network's constructor options (no scale, no dtype)
  params: Any  # NumPy, training form (SPAN: branches), esrgan_jax's layout
  infer_params: Any  # on the JAX device, inference form (SPAN: folded)
  image: np.ndarray  # (1, H, W, 3) float32 in [0, 1]


@dataclasses.dataclass
class Variant:
  """One variant, ready to time: `sync(run_once())` is one synced call."""
  run_once: Callable[[], Any]
  sync: Callable[[Any], Any]
  facts: dict  # device, versions, threads, compile time ...
  forward: Optional[Callable[[np.ndarray], np.ndarray]] = None  # for the agreement check


# ------------------------------------------------------------------------------------------------
# Weights.


def jax_module(network, options, dtype):
  from esrgan_jax.models import rrdbnet, span, srvgg  # pylint: disable=g-import-not-at-top
  if network == "rrdbnet":
    return rrdbnet.RRDBNet(scale=SCALE, dtype=dtype, **options)
  if network == "srvgg":
    return srvgg.SRVGGNetCompact(upscale=SCALE, dtype=dtype, **options)
  return span.SPAN(upscale=SCALE, dtype=dtype, **options)


def torch_like_params(abstract, seed=0):
  """NumPy values in `abstract`'s shapes (a params dict), in PyTorch's default-init ranges."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  flat = traverse_util.flatten_dict(abstract)
  # A conv's bias takes its kernel's fan-in, as torch.nn.Conv2d's does.
  fan_ins = {path[:-1]: int(np.prod(x.shape[:-1])) for path, x in flat.items()
             if path[-1] == "kernel"}
  values = {}
  for path, x in flat.items():
    if path[-1] == "weight":  # PReLU's slopes
      values[path] = np.full(x.shape, PRELU_SLOPE, np.float32)
    else:
      bound = 1 / np.sqrt(fan_ins[path[:-1]])
      values[path] = rng.uniform(-bound, bound, x.shape).astype(np.float32)
  return traverse_util.unflatten_dict(values)


def make_model(network, options, image) -> Model:
  """Random weights for `network` (drawn by NumPy into jax.eval_shape's shapes: no init compile)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from esrgan_jax.models import span  # pylint: disable=g-import-not-at-top
  abstract = jax.eval_shape(jax_module(network, options, jnp.float32).init,
                            jax.random.key(0), jax.ShapeDtypeStruct(image.shape, jnp.float32))
  params = torch_like_params(abstract["params"])
  # SPAN infers in its folded form; torch gets the branches and folds them itself.
  infer_params = span.fold(params) if network == "span" else params
  infer_params = jax.device_put(jax.tree_util.tree_map(np.asarray, infer_params))
  return Model(network, options, params, infer_params, image)


def torch_state(network, options, params):
  """The JAX params (branch form for SPAN) as the reference module's state dict."""
  import torch  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  if network == "rrdbnet":
    from esrgan_jax.weights import generator  # pylint: disable=g-import-not-at-top
    arch = dict(num_in_ch=3, num_out_ch=3, scale=SCALE, **options)
    state = generator.params_to_torch(params, arch)
  else:
    state = {}
    for path, value in traverse_util.flatten_dict(params).items():
      *module, leaf = (re.sub(r"^body_(\d+)$", r"body.\1", name) for name in path)
      value = np.asarray(value)
      state[".".join(module + ["weight" if leaf == "kernel" else leaf])] = (
          value.transpose(3, 2, 0, 1) if value.ndim == 4 else value)
  return {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in state.items()}


def torch_module(network, options, params):
  from reference import torch_models, torch_span, torch_srvgg  # pylint: disable=g-import-not-at-top
  if network == "rrdbnet":
    module = torch_models.RRDBNet(scale=SCALE, **options)
  elif network == "srvgg":
    module = torch_srvgg.SRVGGNetCompact(upscale=SCALE, **options)
  else:
    module = torch_span.SPAN(upscale=SCALE, **options)
  missing, unexpected = module.load_state_dict(torch_state(network, options, params), strict=False)
  # SPAN's eval_conv is refolded from the branches at every eval forward.
  if unexpected or [k for k in missing if ".eval_conv." not in k]:
    raise RuntimeError(f"{network}: weights do not fit the torch module: missing {missing}, "
                       f"unexpected {unexpected}")
  return module.eval()


def prefolded(module):
  """A copy of a torch SPAN with each Conv3XC replaced by its eval_conv, folded once, here."""
  from reference import torch_span  # pylint: disable=g-import-not-at-top
  module = copy.deepcopy(module)
  for parent in list(module.modules()):
    for name, child in list(parent.named_children()):
      if isinstance(child, torch_span.Conv3XC):
        child.update_params()
        setattr(parent, name, child.eval_conv)
  return module


# ------------------------------------------------------------------------------------------------
# The backends.


def jax_variants(args, model: Model, variants):
  """esrgan_jax's module through its inference apply (inference/apply.py, as evaluation and the
  upscaler run it), compiled ahead; params float32, compute dtype per variant."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from esrgan_jax.inference import apply as inference  # pylint: disable=g-import-not-at-top
  x = jax.device_put(model.image)
  built = {}
  for variant in variants:
    dtype = jnp.dtype(variant.split(":")[1])
    options = dict(model.options, deploy=True) if model.network == "span" else model.options
    module = jax_module(model.network, options, dtype)
    jitted = inference.jitted_apply(module)
    apply = lambda p, x, module=module: module.apply({"params": p}, x)
    start = time.perf_counter()
    compiled = jitted.lower(module, model.infer_params, x).compile()
    compile_s = time.perf_counter() - start
    progress(f"{model.network} {variant}: compiled in {compile_s:.1f} s")
    forward = None  # bfloat16 is timed, not checked
    if dtype == jnp.float32 and args.device == "cpu":
      forward = lambda image, c=compiled: np.asarray(c(model.infer_params, image))
    elif dtype == jnp.float32:  # a second program, at full float32 precision rather than TF32

      def forward(image, apply=apply):
        with jax.default_matmul_precision("highest"):
          return np.asarray(jax.jit(apply)(model.infer_params, image))
    built[variant] = Variant(lambda c=compiled: c(model.infer_params, x), jax.block_until_ready,
                             dict(compile_s=compile_s, versions=f"jax {jax.__version__}",
                                  device=jax.devices()[0].device_kind), forward)
  return built


def torch_variants(args, model: Model, variants):
  """reference/'s module, eager, eval mode, torch.no_grad; :prefolded is SPAN's only."""
  import torch  # pylint: disable=g-import-not-at-top
  variants = [v for v in variants if model.network == "span" or not v.endswith("prefolded")]
  if not variants:
    return {}
  cuda = args.device == "cuda"
  torch.backends.cudnn.benchmark = True  # as BasicSR, and benchmarks/torch_rows.py
  device = torch.device(args.device)
  reference = torch_module(model.network, model.options, model.params).to(device)

  def as_input(image):
    return torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2))).to(device)

  x = as_input(model.image)
  facts = dict(versions=f"torch {torch.__version__}", threads=torch.get_num_threads(),
               device=torch.cuda.get_device_name() if cuda else platform.processor() or "cpu")
  built = {}
  for variant in variants:
    module = prefolded(reference) if variant.endswith("prefolded") else reference

    def run_once(module=module):
      with torch.no_grad():
        return module(x)

    def forward(image, module=module):
      allow_tf32 = torch.backends.cudnn.allow_tf32
      torch.backends.cudnn.allow_tf32 = False  # full float32, as the JAX side checks
      try:
        with torch.no_grad():
          return module(as_input(image)).float().cpu().numpy().transpose(0, 2, 3, 1)
      finally:
        torch.backends.cudnn.allow_tf32 = allow_tf32

    sync = (lambda _: torch.cuda.synchronize()) if cuda else (lambda _: None)
    built[variant] = Variant(run_once, sync, facts, forward)
  return built


def onnxruntime_variants(args, model: Model, variants):
  """The network exported by weights/onnx_export.py (as `convert --export OUT.onnx` writes it)
  into a temporary file, run by onnxruntime's CPUExecutionProvider with its default threads; on
  --device cuda none (onnxruntime here is the CPU build)."""
  if args.device != "cpu":
    progress("onnxruntime: CPU only, not timed on --device cuda")
    return {}
  import tempfile  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  try:
    import onnxruntime  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise RuntimeError("the onnxruntime rows need onnxruntime: pip install -r "
                       "requirements-dev.txt") from error
  from esrgan_jax.weights import generator, onnx_export  # pylint: disable=g-import-not-at-top
  # The checkpoint's record and state dict (SPAN: branch form; the export writes it folded).
  arch = generator.arch_of(jax_module(model.network, model.options, jnp.float32))
  state = generator.params_to_torch(model.params, arch)
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as work:
    path = f"{work}/model{onnx_export.ONNX_SUFFIX}"
    onnx_export.write_onnx(path, state, arch, description=model.network)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  build_s = time.perf_counter() - start
  progress(f"{model.network} onnxruntime:fp32: exported and loaded in {build_s:.1f} s")
  name = onnx_export.INPUT_NAME

  def as_input(image):
    return np.ascontiguousarray(image.transpose(0, 3, 1, 2))

  x = as_input(model.image)

  def forward(image):
    return session.run(None, {name: as_input(image)})[0].transpose(0, 2, 3, 1)

  facts = dict(compile_s=build_s, versions=f"onnxruntime {onnxruntime.__version__}",
               device=f"{platform.processor() or 'cpu'} (CPUExecutionProvider)")
  built = {"onnxruntime:fp32": Variant(lambda: session.run(None, {name: x}), lambda _: None,
                                       facts, forward)}
  return {v: built[v] for v in variants}


# backend -> (its variants, in table order; the function that builds them). The first variant of
# all, jax:float32, is the reference every other variant with a `forward` is checked against.
BACKENDS = {
    "jax": (("jax:float32", "jax:bfloat16"), jax_variants),
    "torch": (("torch:fp32", "torch:fp32:prefolded"), torch_variants),
    "onnxruntime": (("onnxruntime:fp32",), onnxruntime_variants),
}
# What runs without --frameworks: onnxruntime is asked for by name (a CPU figure, and a dev-only
# package).
DEFAULT_BACKENDS = ("jax", "torch")
REFERENCE = "jax:float32"


def build_variants(args, model: Model, variants):
  """{variant: Variant} of the wanted `variants`, in BACKENDS' order."""
  built = {}
  for names, build in BACKENDS.values():
    wanted = [v for v in names if v in variants]
    if wanted:
      built.update(build(args, model, wanted))
  return built
