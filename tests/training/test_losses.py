"""esrgan_jax.training.losses against small PyTorch re-statements of BasicSR's losses and ESRGANModel.

Every loss is checked for its value and its gradient: w.r.t. the generator output for the pixel,
perceptual and generator-GAN losses, w.r.t. the real and fake logits (and a small discriminator's
weights) for the discriminator loss. The torch side follows BasicSR's code paths, including its
`.detach()` calls and its separate `backward()` per discriminator term.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from torch import nn as tnn
from torch.nn import functional as F

from esrgan_jax.models import VGG19Features
from esrgan_jax.training import losses
from esrgan_jax.models.vgg19 import (IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_FEATURE_INDEX,
                                     VGG19_BLOCKS)

GAN_WEIGHT = 5e-3
PIXEL_WEIGHT = 1e-2
ABS_TOLERANCE = 1e-4
# Gradients of mean losses are ~1/num_elements, so 1e-4 abs alone would pass anything; each array is
# also held to this tolerance relative to its largest entry.
RELATIVE_TOLERANCE = 1e-4


def assert_matches_torch(actual, expected, relative=RELATIVE_TOLERANCE):
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  error = np.max(np.abs(actual - expected))
  scale = np.max(np.abs(expected))
  assert error <= ABS_TOLERANCE, f"max abs error {error:.3g}"
  assert error <= relative * scale + 1e-12, f"max abs error {error:.3g} at scale {scale:.3g}"


def to_torch(nhwc, requires_grad=False):
  """NHWC numpy -> NCHW float32 torch tensor (a leaf, so .grad is filled)."""
  array = np.asarray(nhwc, np.float32)
  if array.ndim == 4:
    array = array.transpose(0, 3, 1, 2)
  return torch.tensor(np.ascontiguousarray(array), requires_grad=requires_grad)


def from_torch(nchw):
  array = nchw.detach().numpy()
  return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


# ----------------------------------------------------------------------------------------------
# PyTorch references, written after basicsr/losses/basic_loss.py and gan_loss.py.


class TorchL1Loss(tnn.Module):

  def __init__(self, loss_weight=1.0):
    super().__init__()
    self.loss_weight = loss_weight

  def forward(self, pred, target):
    return self.loss_weight * F.l1_loss(pred, target, reduction="mean")


class TorchMSELoss(tnn.Module):

  def __init__(self, loss_weight=1.0):
    super().__init__()
    self.loss_weight = loss_weight

  def forward(self, pred, target):
    return self.loss_weight * F.mse_loss(pred, target, reduction="mean")


class TorchCharbonnierLoss(tnn.Module):

  def __init__(self, loss_weight=1.0, eps=1e-12):
    super().__init__()
    self.loss_weight, self.eps = loss_weight, eps

  def forward(self, pred, target):
    return self.loss_weight * torch.sqrt((pred - target)**2 + self.eps).mean()


class TorchVanillaGANLoss(tnn.Module):
  """BasicSR's GANLoss('vanilla'): BCE-with-logits against a constant label; the loss weight only
  applies to the generator's use (is_disc=False)."""

  def __init__(self, loss_weight=1.0):
    super().__init__()
    self.loss_weight = loss_weight
    self.bce = tnn.BCEWithLogitsLoss()

  def forward(self, logits, target_is_real, is_disc=False):
    target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
    loss = self.bce(logits, target)
    return loss if is_disc else loss * self.loss_weight


def torch_vgg19_features(seed=0):
  """torchvision's `vgg19().features` layout (conv, relu, ..., maxpool) with He-normal weights.

  He init keeps activations O(1) down to conv5_4; PyTorch's default init would shrink them by ~3x
  per layer and make every comparison trivially small.
  """
  torch.manual_seed(seed)
  layers, in_channels = [], 3
  for _, num_convs, width in VGG19_BLOCKS:
    for _ in range(num_convs):
      conv = tnn.Conv2d(in_channels, width, 3, padding=1)
      tnn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
      tnn.init.uniform_(conv.bias, -0.1, 0.1)
      layers += [conv, tnn.ReLU(inplace=False)]
      in_channels = width
    layers.append(tnn.MaxPool2d(2, 2))
  features = tnn.Sequential(*layers)
  for p in features.parameters():
    p.requires_grad_(False)
  return features


def flax_params_from_torch_vgg(features, layers):
  """Copies torch conv weights into VGG19Features params, checked against Flax's own param tree."""
  module = VGG19Features(layers=tuple(layers))
  expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  params = {}
  for name in expected:
    conv = features[TORCHVISION_FEATURE_INDEX[name]]
    params[name] = {"kernel": jnp.asarray(conv.weight.numpy().transpose(2, 3, 1, 0)),
                    "bias": jnp.asarray(conv.bias.numpy())}
  assert jax.tree.map(lambda a: a.shape, params) == jax.tree.map(lambda a: a.shape, expected)
  return module, {"params": params}


def torch_vgg_feature_extract(features, x, layers):
  """BasicSR's VGGFeatureExtractor.forward: ImageNet-normalise, run `features`, keep named outputs.

  The name of the module at torchvision index i is conv<b>_<k> for the convs, so the kept tensors
  are the conv outputs before their ReLU.
  """
  mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
  std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
  x = (x - mean) / std
  index_to_name = {index: name for name, index in TORCHVISION_FEATURE_INDEX.items()}
  deepest = max(TORCHVISION_FEATURE_INDEX[name] for name in layers)
  outputs = {}
  for index, layer in enumerate(features[:deepest + 1]):
    x = layer(x)
    if index_to_name.get(index) in layers:
      outputs[index_to_name[index]] = x.clone()
  return outputs


class TorchPerceptualLoss(tnn.Module):
  """BasicSR's PerceptualLoss (perceptual_weight 1, no style term), criterion 'l1' or 'l2'."""

  def __init__(self, features, layer_weights, criterion="l1"):
    super().__init__()
    self.features, self.layer_weights = features, layer_weights
    self.criterion = {"l1": tnn.L1Loss(), "l2": tnn.MSELoss()}[criterion]

  def forward(self, x, gt):
    x_features = torch_vgg_feature_extract(self.features, x, self.layer_weights)
    gt_features = torch_vgg_feature_extract(self.features, gt.detach(), self.layer_weights)
    loss = 0
    for k in x_features:
      loss = loss + self.criterion(x_features[k], gt_features[k]) * self.layer_weights[k]
    return loss


def torch_generator_gan_loss(gan, real_d_pred, fake_g_pred):
  """The relativistic G term of ESRGANModel.optimize_parameters (real_d_pred already detached)."""
  l_g_real = gan(real_d_pred - torch.mean(fake_g_pred), False, is_disc=False)
  l_g_fake = gan(fake_g_pred - torch.mean(real_d_pred), True, is_disc=False)
  return (l_g_real + l_g_fake) / 2


def torch_discriminator_gan_backward(gan, real_d_pred, fake_d_pred):
  """The D half of optimize_parameters: two terms, each with its own backward() as BasicSR does."""
  l_d_real = gan(real_d_pred - torch.mean(fake_d_pred.detach()), True, is_disc=True) * 0.5
  l_d_real.backward()
  l_d_fake = gan(fake_d_pred - torch.mean(real_d_pred.detach()), False, is_disc=True) * 0.5
  l_d_fake.backward()
  return l_d_real.item(), l_d_fake.item()


# A tiny patch discriminator used on both sides so the GAN terms see logits that depend on the
# image; what is tested is the loss wiring, not BasicSR's discriminator (models tests do that).
class TorchTinyDiscriminator(tnn.Module):

  def __init__(self):
    super().__init__()
    self.conv0 = tnn.Conv2d(3, 8, 3, padding=1)
    self.conv1 = tnn.Conv2d(8, 1, 3, stride=2, padding=1)

  def forward(self, x):
    return self.conv1(F.leaky_relu(self.conv0(x), 0.2))


class FlaxTinyDiscriminator(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.leaky_relu(nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), name="conv0")(x), 0.2)
    return nn.Conv(1, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="conv1")(x)


def tiny_discriminators(seed=0):
  torch.manual_seed(seed)
  torch_d = TorchTinyDiscriminator()
  params = {name: {"kernel": jnp.asarray(conv.weight.detach().numpy().transpose(2, 3, 1, 0)),
                   "bias": jnp.asarray(conv.bias.detach().numpy())}
            for name, conv in (("conv0", torch_d.conv0), ("conv1", torch_d.conv1))}
  return torch_d, FlaxTinyDiscriminator(), {"params": params}


# ----------------------------------------------------------------------------------------------
# Shared inputs.


def images(seed, shape=(2, 16, 16, 3)):
  """An SR/HR pair in [0, 1] with a few exact ties, where L1's subgradient choice shows."""
  rng = np.random.default_rng(seed)
  hr = rng.uniform(0, 1, shape).astype(np.float32)
  sr = np.clip(hr + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
  sr.reshape(-1)[::7] = hr.reshape(-1)[::7]
  return sr, hr


@pytest.fixture(scope="module", autouse=True)
def single_threaded_torch():
  # On the shared 2-core test machine torch's default thread pool mostly waits on other processes;
  # one thread runs these small VGG passes several times faster.
  previous = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def torch_vgg():
  return torch_vgg19_features()


# ----------------------------------------------------------------------------------------------
# Pixel losses.


@pytest.mark.parametrize("criterion, torch_loss", [
    ("l1", TorchL1Loss()),
    ("l2", TorchMSELoss()),
    ("mse", TorchMSELoss()),
    ("charbonnier", TorchCharbonnierLoss(eps=1e-12)),
])
def test_pixel_loss_value_and_gradient_match_basicsr(criterion, torch_loss):
  sr, hr = images(seed=1)
  value, grad = jax.value_and_grad(losses.pixel_loss)(jnp.asarray(sr), jnp.asarray(hr), criterion)

  sr_torch = to_torch(sr, requires_grad=True)
  torch_value = torch_loss(sr_torch, to_torch(hr))
  torch_value.backward()

  assert_matches_torch(value, torch_value.item())
  assert_matches_torch(grad, from_torch(sr_torch.grad))


def test_charbonnier_epsilon_is_basicsr_default():
  assert losses.CHARBONNIER_EPSILON == 1e-12
  zeros = jnp.zeros((1, 4, 4, 3))
  # sqrt(0 + eps) everywhere: the loss of identical images is sqrt(1e-12) = 1e-6, gradient 0.
  np.testing.assert_allclose(losses.charbonnier_loss(zeros, zeros), 1e-6, rtol=1e-5)
  assert not np.any(jax.grad(losses.charbonnier_loss)(zeros, zeros))


def test_pixel_loss_is_float32_for_bfloat16_predictions():
  sr, hr = images(seed=2)
  value = losses.pixel_loss(jnp.asarray(sr, jnp.bfloat16), jnp.asarray(hr), "l1")
  assert value.dtype == jnp.float32


def test_unknown_criteria_are_rejected_by_name():
  x = jnp.zeros((1, 2, 2, 3))
  with pytest.raises(ValueError, match="'huber'"):
    losses.pixel_loss(x, x, "huber")
  with pytest.raises(ValueError, match="'fro'"):
    losses.perceptual_loss({"conv5_4": x}, {"conv5_4": x}, {"conv5_4": 1.0}, "fro")
  with pytest.raises(ValueError, match="conv4_4"):
    losses.perceptual_loss({"conv5_4": x}, {"conv5_4": x}, {"conv4_4": 1.0})


# ----------------------------------------------------------------------------------------------
# Perceptual loss.


PERCEPTUAL_LAYERS = ("conv1_2", "conv3_4", "conv5_4")
PERCEPTUAL_IMAGE_SHAPE = (2, 32, 32, 3)


@pytest.fixture(scope="module")
def flax_vgg(torch_vgg):
  """The torch VGG19's weights in VGG19Features, jitted once: compiling VGG19 dominates these tests,
  so every case below reuses this one function on inputs of one shape."""
  vgg, vgg_params = flax_params_from_torch_vgg(torch_vgg, PERCEPTUAL_LAYERS)
  return jax.jit(lambda x: vgg.apply(vgg_params, x))


@pytest.fixture(scope="module")
def flax_vgg_features_and_pullback(flax_vgg):
  """VGG19 features of one SR/HR pair, and the VJP that maps feature gradients back to SR pixels.

  One VJP serves every (layer weights, criterion) case; it is the chain rule jax.grad would take.
  """
  sr, hr = images(seed=3, shape=PERCEPTUAL_IMAGE_SHAPE)
  sr_features, pullback = jax.vjp(flax_vgg, jnp.asarray(sr))
  return sr, hr, sr_features, flax_vgg(jnp.asarray(hr)), pullback


@pytest.mark.parametrize("layer_weights, criterion", [
    ({"conv1_2": 0.1, "conv3_4": 1.0, "conv5_4": 1.0}, "l1"),
    ({"conv5_4": 1.0}, "l2"),
    ({"conv3_4": 0.5, "conv5_4": 2.0}, "mse"),
])
def test_perceptual_loss_value_and_gradient_match_basicsr(
    torch_vgg, flax_vgg_features_and_pullback, layer_weights, criterion):
  sr, hr, sr_features, hr_features, pullback = flax_vgg_features_and_pullback
  value, (grad_sr_features, grad_hr_features) = jax.value_and_grad(
      losses.perceptual_loss, argnums=(0, 1))(sr_features, hr_features, layer_weights, criterion)
  (grad_sr,) = pullback(grad_sr_features)

  sr_torch = to_torch(sr, requires_grad=True)
  torch_value = TorchPerceptualLoss(torch_vgg, layer_weights, "l1" if criterion == "l1" else "l2")(
      sr_torch, to_torch(hr))
  torch_value.backward()

  assert torch_value.item() > 1e-3  # the features are not vanishingly small
  assert_matches_torch(value, torch_value.item())
  assert_matches_torch(grad_sr, from_torch(sr_torch.grad))
  # BasicSR feeds gt.detach(): the HR features must pass no gradient back.
  assert not any(np.any(np.asarray(g)) for g in jax.tree.leaves(grad_hr_features))


# ----------------------------------------------------------------------------------------------
# Relativistic average GAN losses.

LOGIT_SHAPES = [(4, 1), (2, 8, 8, 1)]  # VGG-style (one logit per image) and U-Net (per pixel)


def logits(seed, shape):
  rng = np.random.default_rng(seed)
  return (rng.normal(0.5, 2.0, shape).astype(np.float32),
          rng.normal(-0.5, 2.0, shape).astype(np.float32))


@pytest.mark.parametrize("shape", LOGIT_SHAPES)
def test_generator_ragan_loss_matches_basicsr(shape):
  real, fake = logits(seed=4, shape=shape)

  def loss_fn(real, fake):
    return GAN_WEIGHT * losses.generator_ragan_loss(real, fake)

  value, (grad_real, grad_fake) = jax.value_and_grad(loss_fn, argnums=(0, 1))(
      jnp.asarray(real), jnp.asarray(fake))

  fake_torch = to_torch(fake, requires_grad=True)
  real_torch = to_torch(real, requires_grad=True)
  gan = TorchVanillaGANLoss(loss_weight=GAN_WEIGHT)
  torch_value = torch_generator_gan_loss(gan, real_torch.detach(), fake_torch)
  torch_value.backward()

  assert_matches_torch(value, torch_value.item())
  assert_matches_torch(grad_fake, from_torch(fake_torch.grad))
  assert real_torch.grad is None and not np.any(np.asarray(grad_real))


@pytest.mark.parametrize("shape", LOGIT_SHAPES)
def test_discriminator_ragan_loss_matches_basicsr(shape):
  real, fake = logits(seed=5, shape=shape)

  def loss_fn(real, fake):
    loss_real, loss_fake = losses.discriminator_ragan_loss(real, fake)
    return loss_real + loss_fake, (loss_real, loss_fake)

  (_, (loss_real, loss_fake)), (grad_real, grad_fake) = jax.value_and_grad(
      loss_fn, argnums=(0, 1), has_aux=True)(jnp.asarray(real), jnp.asarray(fake))

  real_torch = to_torch(real, requires_grad=True)
  fake_torch = to_torch(fake, requires_grad=True)
  torch_real, torch_fake = torch_discriminator_gan_backward(
      TorchVanillaGANLoss(loss_weight=GAN_WEIGHT), real_torch, fake_torch)

  assert_matches_torch(loss_real, torch_real)
  assert_matches_torch(loss_fake, torch_fake)
  assert_matches_torch(grad_real, from_torch(real_torch.grad))
  assert_matches_torch(grad_fake, from_torch(fake_torch.grad))


def test_bce_is_stable_for_large_logits():
  real = jnp.array([[80.0], [-90.0]])
  fake = jnp.array([[-70.0], [100.0]])
  values = losses.discriminator_ragan_loss(real, fake) + (losses.generator_ragan_loss(real, fake),)
  grads = jax.grad(lambda r, f: losses.generator_ragan_loss(r, f), argnums=1)(real, fake)
  assert all(np.isfinite(v) for v in values) and np.all(np.isfinite(grads))


def test_discriminator_step_gradients_match_basicsr():
  """D's parameter gradients through a small discriminator, generator output stopped."""
  sr, hr = images(seed=6)
  torch_d, flax_d, d_params = tiny_discriminators()

  def d_loss(d_params, sr, hr):
    fake_logits = flax_d.apply(d_params, jax.lax.stop_gradient(sr))
    real_logits = flax_d.apply(d_params, hr)
    return sum(losses.discriminator_ragan_loss(real_logits, fake_logits))

  value, (grad_params, grad_sr) = jax.value_and_grad(d_loss, argnums=(0, 1))(
      d_params, jnp.asarray(sr), jnp.asarray(hr))

  output = to_torch(sr, requires_grad=True)
  gt = to_torch(hr)
  # As ESRGANModel: the real term sees net_d(output).detach(), the fake term net_d(output.detach()).
  gan = TorchVanillaGANLoss(loss_weight=GAN_WEIGHT)
  fake_d_pred = torch_d(output).detach()
  real_d_pred = torch_d(gt)
  l_d_real = gan(real_d_pred - torch.mean(fake_d_pred), True, is_disc=True) * 0.5
  l_d_real.backward()
  fake_d_pred = torch_d(output.detach())
  l_d_fake = gan(fake_d_pred - torch.mean(real_d_pred.detach()), False, is_disc=True) * 0.5
  l_d_fake.backward()

  assert_matches_torch(value, l_d_real.item() + l_d_fake.item())
  # Compared as one vector: near D's symmetric point some leaves (the last bias) almost cancel, so
  # the relative check uses the scale of the whole gradient.
  torch_grads = {name: {"kernel": getattr(torch_d, name).weight.grad.numpy().transpose(2, 3, 1, 0),
                        "bias": getattr(torch_d, name).bias.grad.numpy()}
                 for name in ("conv0", "conv1")}
  flat = lambda tree: np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])
  assert_matches_torch(flat(grad_params["params"]), flat(torch_grads))
  assert output.grad is None and not np.any(np.asarray(grad_sr))


# ----------------------------------------------------------------------------------------------
# The generator's total loss in the GAN stage: percep + 5e-3 * gan + 1e-2 * l1.


def test_generator_total_loss_gradient_matches_basicsr(torch_vgg, flax_vgg):
  sr, hr = images(seed=7, shape=PERCEPTUAL_IMAGE_SHAPE)
  layer_weights = {"conv5_4": 1.0}
  torch_d, flax_d, d_params = tiny_discriminators(seed=1)

  def generator_loss(sr, hr):
    percep = losses.perceptual_loss(flax_vgg(sr), flax_vgg(hr), layer_weights, "l1")
    gan = losses.generator_ragan_loss(flax_d.apply(d_params, hr), flax_d.apply(d_params, sr))
    pixel = losses.pixel_loss(sr, hr, "l1")
    return percep + GAN_WEIGHT * gan + PIXEL_WEIGHT * pixel

  # Not jitted as a whole, so the jitted VGG19 of the cases above is partly reused (saves ~10 s).
  value, grad = jax.value_and_grad(generator_loss)(jnp.asarray(sr), jnp.asarray(hr))

  # ESRGANModel.optimize_parameters, generator half (D frozen).
  for p in torch_d.parameters():
    p.requires_grad_(False)
  output = to_torch(sr, requires_grad=True)
  gt = to_torch(hr)
  l_g_pix = TorchL1Loss(loss_weight=PIXEL_WEIGHT)(output, gt)
  l_g_percep = TorchPerceptualLoss(torch_vgg, layer_weights, "l1")(output, gt)
  real_d_pred = torch_d(gt).detach()
  fake_g_pred = torch_d(output)
  l_g_gan = torch_generator_gan_loss(TorchVanillaGANLoss(loss_weight=GAN_WEIGHT), real_d_pred,
                                     fake_g_pred)
  l_g_total = l_g_pix + l_g_percep + l_g_gan
  l_g_total.backward()

  assert_matches_torch(value, l_g_total.item())
  assert_matches_torch(grad, from_torch(output.grad))


@pytest.mark.parametrize("shape", [(3, 1), (2, 8, 8, 1)])
def test_vanilla_gan_losses_and_gradients_match_basicsr(shape):
  """BasicSR's GANLoss('vanilla'): BCEWithLogits against labels 1 / 0; G's term weighted 0.1,
  the D's two terms unweighted, each backward on its own with the fake detached."""
  rng = np.random.default_rng(5)
  real = rng.normal(size=shape).astype(np.float32) * 3
  fake = rng.normal(size=shape).astype(np.float32) * 3
  weight = 0.1
  bce = tnn.BCEWithLogitsLoss()
  fake_t = torch.tensor(fake, requires_grad=True)
  g_t = bce(fake_t, torch.ones_like(fake_t)) * weight
  g_t.backward()
  g_value, g_grad = jax.value_and_grad(lambda f: weight * losses.generator_gan_loss(f))(fake)
  assert_matches_torch(g_value, g_t.item())
  assert_matches_torch(g_grad, fake_t.grad.numpy())

  real_t = torch.tensor(real, requires_grad=True)
  l_real_t = bce(real_t, torch.ones_like(real_t))
  l_real_t.backward()
  fake_leaf = torch.tensor(fake, requires_grad=True)
  l_fake_t = bce(fake_leaf, torch.zeros_like(fake_leaf))
  l_fake_t.backward()
  (l_real, l_fake), vjp = jax.vjp(losses.discriminator_gan_loss, real, fake)
  assert_matches_torch(l_real, l_real_t.item())
  assert_matches_torch(l_fake, l_fake_t.item())
  grad_real, grad_fake = vjp((jnp.float32(1), jnp.float32(1)))
  assert_matches_torch(grad_real, real_t.grad.numpy())
  assert_matches_torch(grad_fake, fake_leaf.grad.numpy())
  # Each D term sees only its own logits.
  assert np.all(np.asarray(jax.grad(lambda f: losses.discriminator_gan_loss(real, f)[0])(fake))
                == 0)
