"""Generators as ONNX graphs: `python -m esrgan_jax.convert --export CKPT_DIR OUT.onnx [--half]`.

The graph is written op by op with the onnx package's helpers over the PyTorch-layout state dict
(`generator.params_to_torch`), following the published PyTorch modules: the ops their own ONNX
export gives, initializers named by their state-dict keys (RRDBNet: BasicSR's; SPAN: each
Conv3XC's folded `eval_conv`, spandrel's deploy form). No converter runs the JAX code, so nothing
has to keep in step with jax (docs/design.md says why).

The model: opset 17, one input "input" (batch, num_in_ch, height, width) and one output "output"
(batch, num_out_ch, height * scale, width * scale), NCHW RGB in [0, 1] as the PyTorch networks
take; batch, height and width are symbolic. float32, or float16 throughout with `half` (input,
output, weights and constants; Resize's scales stay float32 as ONNX requires). RRDBNet x2 / x1
pixel-unshuffle their input, so there, as in PyTorch, height and width must be multiples of 2 / 4.

PyTorch's pixel-shuffle order is DepthToSpace's CRD mode. SpaceToDepth has only the DCR order
(channel (row * f + col) * C + c, where pixel_unshuffle makes c * f * f + row * f + col), so a
Gather of the channels follows it to give pixel_unshuffle's order exactly. onnx is imported only
here, and only when a model is written.
"""

import json
import os
from typing import Any, Mapping

import numpy as np

from esrgan_jax.models import rrdbnet as rrdbnet_model
from esrgan_jax.models import span as span_model
from esrgan_jax.models import srvgg as srvgg_model
from esrgan_jax.weights import rrdbnet, span, srvgg
from esrgan_jax.weights.store import has_suffix, import_for, refuse_existing, write_bytes

ONNX_SUFFIX = ".onnx"
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "output"
# The symbolic dims; the output's are the input's times the scale.
BATCH, HEIGHT, WIDTH = "batch", "height", "width"
OUT_HEIGHT, OUT_WIDTH = "out_height", "out_width"


def is_onnx_path(path: str | os.PathLike) -> bool:
  return has_suffix(path, ONNX_SUFFIX)


def _import_onnx(path):
  return import_for(path, "onnx", "writing .onnx files needs the onnx package (pip install onnx)")


class _Graph:
  """The nodes and initializers of one graph; each node's output is named as the node."""

  def __init__(self, onnx, state: Mapping[str, Any], dtype: np.dtype):
    self.onnx, self.state, self.dtype = onnx, state, dtype
    self.nodes, self.initializers, self._names = [], [], set()

  def _unique(self, name: str) -> str:
    if name in self._names:
      raise ValueError(f"ONNX export: the name {name!r} is used twice")
    self._names.add(name)
    return name

  def tensor(self, name: str, array, dtype: Any = None) -> str:
    """An initializer, in the model's float type unless `dtype` says otherwise."""
    array = np.asarray(array, dtype or self.dtype)
    self.initializers.append(self.onnx.numpy_helper.from_array(array, self._unique(name)))
    return name

  def scalar(self, name: str, value: float) -> str:
    """A float constant shared by every node that reads it (0.2, 0.5, ...)."""
    return name if name in self._names else self.tensor(name, np.array(value))

  def node(self, op: str, inputs: list[str], name: str, **attributes) -> str:
    self.nodes.append(self.onnx.helper.make_node(op, inputs, [self._unique(name)], name=name,
                                                 **attributes))
    return name

  def conv(self, x: str, key: str) -> str:
    """Conv2d `key` of the state dict (OIHW weight and bias), padding k // 2 as every one here."""
    weight = self.tensor(f"{key}.weight", self.state[f"{key}.weight"])
    bias = self.tensor(f"{key}.bias", self.state[f"{key}.bias"])
    size = int(np.shape(self.state[f"{key}.weight"])[-1])
    return self.node("Conv", [x, weight, bias], key, kernel_shape=[size, size],
                     pads=[size // 2] * 4)

  def leaky_relu(self, x: str, slope: float, name: str) -> str:
    return self.node("LeakyRelu", [x], name, alpha=slope)

  def silu(self, x: str, name: str) -> str:
    """x * sigmoid(x), as torch exports SiLU (opset 17 has no such op)."""
    return self.node("Mul", [x, self.node("Sigmoid", [x], f"{name}.sigmoid")], name)

  def residual(self, out: str, skip: str, scale: str, name: str) -> str:
    """out * scale + skip."""
    return self.node("Add", [self.node("Mul", [out, scale], f"{name}.scale"), skip], name)

  def upsample_nearest(self, x: str, factor: int, name: str) -> str:
    """F.interpolate(mode='nearest') by an integer factor: output pixel i reads floor(i / f)."""
    scales = self.tensor(f"{name}.scales", [1, 1, factor, factor], np.float32)
    return self.node("Resize", [x, "", scales], name, mode="nearest",
                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")

  def pixel_shuffle(self, x: str, factor: int, name: str) -> str:
    return self.node("DepthToSpace", [x], name, blocksize=factor, mode="CRD")

  def pixel_unshuffle(self, x: str, factor: int, channels: int, name: str) -> str:
    """F.pixel_unshuffle: SpaceToDepth, then its channels reordered into PyTorch's order."""
    blocks = factor * factor
    order = [(k % blocks) * channels + k // blocks for k in range(channels * blocks)]
    indices = self.tensor(f"{name}.channel_order", order, np.int64)
    space_to_depth = self.node("SpaceToDepth", [x], f"{name}.space_to_depth", blocksize=factor)
    return self.node("Gather", [space_to_depth, indices], name, axis=1)


# ------------------------------------------------------------------------------------------------
# The networks, as their PyTorch forward passes go.


def _rrdbnet(graph: _Graph, x: str, arch: Mapping[str, Any]) -> str:
  """BasicSR's RRDBNet.forward; the x2 / x1 models pixel-unshuffle their input first."""
  slope, scale = rrdbnet_model.LEAKY_SLOPE, arch["scale"]
  residual_scale = graph.scalar("residual_scale", rrdbnet_model.RESIDUAL_SCALE)
  if scale < 4:
    x = graph.pixel_unshuffle(x, 4 // scale, arch["num_in_ch"], "pixel_unshuffle")
  feat = graph.conv(x, "conv_first")
  body = feat
  for b in range(arch["num_block"]):
    block_in = body
    for r in range(1, 4):
      rdb, features = f"body.{b}.rdb{r}", [body]
      for c in range(1, 6):
        inputs = graph.node("Concat", features, f"{rdb}.cat{c}", axis=1) if c > 1 else body
        out = graph.conv(inputs, f"{rdb}.conv{c}")
        if c < 5:
          features.append(graph.leaky_relu(out, slope, f"{rdb}.lrelu{c}"))
      body = graph.residual(out, features[0], residual_scale, f"{rdb}.add")
    body = graph.residual(body, block_in, residual_scale, f"body.{b}.add")
  feat = graph.node("Add", [feat, graph.conv(body, "conv_body")], "trunk_add")
  for up in ("conv_up1", "conv_up2"):
    upsampled = graph.upsample_nearest(feat, 2, f"{up}.upsample")
    feat = graph.leaky_relu(graph.conv(upsampled, up), slope, f"{up}.lrelu")
  feat = graph.leaky_relu(graph.conv(feat, "conv_hr"), slope, "conv_hr.lrelu")
  return graph.conv(feat, "conv_last")


def _srvgg(graph: _Graph, x: str, arch: Mapping[str, Any]) -> str:
  """SRVGGNetCompact.forward: the body, PixelShuffle, plus the nearest-upsampled input."""
  out, last = x, 2 * arch["num_conv"] + 2
  for index in range(0, last, 2):
    out = graph.conv(out, f"body.{index}")
    act = f"body.{index + 1}"
    if arch["act_type"] == "prelu":  # one slope per channel, broadcast over H and W
      slope = graph.tensor(f"{act}.weight", np.reshape(graph.state[f"{act}.weight"], (-1, 1, 1)))
      out = graph.node("PRelu", [out, slope], act)
    elif arch["act_type"] == "relu":
      out = graph.node("Relu", [out], act)
    else:
      out = graph.leaky_relu(out, srvgg_model.LEAKY_SLOPE, act)
  out = graph.conv(out, f"body.{last}")
  scale = arch["scale"]
  if scale == 1:  # PixelShuffle(1) and a x1 interpolate return their input
    return graph.node("Add", [out, x], "add_base")
  base = graph.upsample_nearest(x, scale, "base")
  return graph.node("Add", [graph.pixel_shuffle(out, scale, "upsampler"), base], "add_base")


def _span(graph: _Graph, x: str, arch: Mapping[str, Any]) -> str:
  """SPAN.forward in the deploy form: every Conv3XC is its folded eval_conv."""
  if arch["norm"]:
    mean = graph.tensor("rgb_mean", np.reshape(span_model.DEFAULT_RGB_MEAN, (1, -1, 1, 1)))
    centred = graph.node("Sub", [x, mean], "norm.sub")
    x = graph.node("Mul", [centred, graph.scalar("img_range", 255.0)], "norm")
  shift = graph.scalar("attention_shift", 0.5)
  conv3xc = lambda x, name: graph.conv(x, f"{name}.eval_conv")
  out_feature = conv3xc(x, "conv_1")
  out, block_outputs = out_feature, []
  for i in range(1, span_model.SPAB_COUNT + 1):
    block = f"block_{i}"
    out1 = graph.silu(conv3xc(out, f"{block}.c1_r"), f"{block}.act1")
    out2 = graph.silu(conv3xc(out1, f"{block}.c2_r"), f"{block}.act2")
    out3 = conv3xc(out2, f"{block}.c3_r")
    attention = graph.node("Sub", [graph.node("Sigmoid", [out3], f"{block}.sigmoid"), shift],
                           f"{block}.attention")
    out = graph.node("Mul", [graph.node("Add", [out3, out], f"{block}.add"), attention], block)
    block_outputs.append((out, out1))
  out_b6 = conv3xc(out, "conv_2")
  cat = graph.node("Concat", [out_feature, out_b6, block_outputs[0][0], block_outputs[-1][1]],
                   "cat", axis=1)
  out = graph.conv(graph.conv(cat, "conv_cat"), "upsampler.0")
  if arch["scale"] == 1:
    return out
  return graph.pixel_shuffle(out, arch["scale"], "upsampler.1")


_BUILDERS = {rrdbnet.ARCH_NAME: _rrdbnet, srvgg.ARCH_NAME: _srvgg, span.ARCH_NAME: _span}


# ------------------------------------------------------------------------------------------------
# The model file.


def onnx_model(state: Mapping[str, Any], arch: Mapping[str, Any], half: bool = False,
               description: str = "", path: str | os.PathLike = "ONNX model"):
  """The checked onnx.ModelProto of a generator's PyTorch-layout state dict (see module doc)."""
  onnx = _import_onnx(path)
  name = arch.get("arch", rrdbnet.ARCH_NAME)
  graph = _Graph(onnx, state, np.float16 if half else np.float32)
  out = _BUILDERS[name](graph, INPUT_NAME, arch)
  graph.nodes.append(onnx.helper.make_node("Identity", [out], [OUTPUT_NAME], name=OUTPUT_NAME))
  elem = onnx.TensorProto.FLOAT16 if half else onnx.TensorProto.FLOAT
  inputs = [onnx.helper.make_tensor_value_info(
      INPUT_NAME, elem, [BATCH, arch["num_in_ch"], HEIGHT, WIDTH])]
  outputs = [onnx.helper.make_tensor_value_info(
      OUTPUT_NAME, elem, [BATCH, arch["num_out_ch"], OUT_HEIGHT, OUT_WIDTH])]
  doc = (f"esrgan_jax generator {description}: NCHW RGB in [0, 1] -> x{arch['scale']}, "
         f"{'float16' if half else 'float32'}")
  onnx_graph = onnx.helper.make_graph(graph.nodes, f"esrgan_jax_{name}", inputs, outputs,
                                      graph.initializers, doc_string=doc)
  opsets = [onnx.helper.make_opsetid("", OPSET)]
  # The lowest IR version that holds this opset, so older runtimes read the file too.
  model = onnx.helper.make_model(onnx_graph, opset_imports=opsets, producer_name="esrgan_jax",
                                 ir_version=onnx.helper.find_min_ir_version_for(opsets),
                                 doc_string=doc)
  onnx.helper.set_model_props(model, {"arch": json.dumps(dict(arch)),
                                      "scale": str(arch["scale"]), "input_range": "[0, 1]"})
  onnx.checker.check_model(model, full_check=True)
  return model


def write_onnx(path: str | os.PathLike, state: Mapping[str, Any], arch: Mapping[str, Any],
               half: bool = False, description: str = "") -> None:
  """Writes the generator's ONNX model to a new file `path` (local or gs://)."""
  refuse_existing(path, "output file")
  model = onnx_model(state, arch, half, description, path)
  write_bytes(path, model.SerializeToString())
