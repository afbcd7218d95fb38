"""The PyTorch rows of benchmarks/benchmark.py: reference/torch_models.py's networks, stepped as
BasicSR's train.py steps them."""

import platform

from benchmarks.common import (JAX_ONLY_ROWS, SCALE, Measurable, conv_probe_shape,
                               peak_rss_bytes, size_plan)

# BasicSR's train_ESRGAN_x4 loss weights and optimiser settings, for the PyTorch step.
PIXEL_WEIGHT, PERCEPTUAL_WEIGHT, GAN_WEIGHT = 1e-2, 1.0, 5e-3
EMA_DECAY = 0.999


def torch_generator(args):
  """--arch's generator, as reference/ states it in PyTorch (train mode)."""
  from reference import torch_models, torch_span, torch_srvgg  # pylint: disable=g-import-not-at-top
  if args.arch == "compact":
    return torch_srvgg.SRVGGNetCompact(num_feat=args.num_feat, num_conv=args.num_conv,
                                       upscale=SCALE, act_type="prelu")
  if args.arch == "span":  # in train mode a Conv3XC runs its branches, as the JAX step does
    return torch_span.SPAN(feature_channels=args.feature_channels, upscale=SCALE)
  return torch_models.RRDBNet(num_feat=args.num_feat, num_block=args.num_block,
                              num_grow_ch=args.num_grow_ch)


def torch_measurables(args, group):
  """Builds the requested rows of a PyTorch group one at a time, as they are timed."""
  for sized_args, rows in size_plan(args):
    yield from torch_measurables_at(sized_args, group,
                                    [r for r in rows if r not in JAX_ONLY_ROWS])


def torch_measurables_at(args, group, rows):
  """torch_measurables at one size."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch.nn import functional as F  # pylint: disable=g-import-not-at-top
  from reference import torch_models as ref  # pylint: disable=g-import-not-at-top

  cuda = torch.cuda.is_available()
  device = torch.device("cuda" if cuda else "cpu")
  torch.backends.cudnn.benchmark = True  # as BasicSR's train.py
  amp = group.precision == "amp_bf16"
  memory_format = torch.channels_last if "channels_last" in group.options else torch.contiguous_format
  facts = dict(device=torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
               platform="gpu" if cuda else "cpu", versions=f"torch {torch.__version__}",
               threads=torch.get_num_threads())
  generator = torch.Generator(device="cpu").manual_seed(0)

  def autocast():
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

  def sync(_):
    if cuda:
      torch.cuda.synchronize()

  def prepare(module, compile_it=True):
    module = module.to(device, memory_format=memory_format)
    return torch.compile(module) if compile_it and "compile" in group.options else module

  def images(n, side):
    x = torch.rand((n, 3, side, side), generator=generator)
    return x.to(device, memory_format=memory_format)

  def make_ema(module):
    ema = [p.detach().clone() for p in module.parameters()]
    params = list(module.parameters())

    @torch.no_grad()
    def update():
      torch._foreach_mul_(ema, EMA_DECAY)  # pylint: disable=protected-access
      torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - EMA_DECAY)  # pylint: disable=protected-access
    return update

  def measurable(row, run_once, batch):
    if cuda:
      torch.cuda.empty_cache()
      torch.cuda.reset_peak_memory_stats()
    return Measurable(row, run_once, sync, batch, facts,
                      torch.cuda.max_memory_allocated if cuda else peak_rss_bytes, args=args)

  for row in rows:
    if row == "infer":
      net_g = prepare(torch_generator(args).eval())
      x = images(args.infer_batch, args.infer_size)

      def upscale(net_g=net_g, x=x):
        with torch.inference_mode(), autocast():
          return net_g(x)

      yield measurable(row, upscale, args.infer_batch)
    elif row == "conv":
      n, h, w, c_in, c_out = conv_probe_shape(args)
      x = torch.rand((n, c_in, h, w), generator=generator).to(device, memory_format=memory_format)
      x.requires_grad_(True)
      weight = (torch.randn((c_out, c_in, 3, 3), generator=generator) * 0.05).to(device)
      weight = weight.to(memory_format=memory_format).requires_grad_(True)

      def conv_grads(x=x, weight=weight):
        with autocast():
          y = F.conv2d(x, weight, padding=1)
        return torch.autograd.grad(y.float().square().sum(), (x, weight))

      yield measurable(row, conv_grads, args.batch)
    else:
      net_g = torch_generator(args).to(device, memory_format=memory_format)
      run_g = prepare(net_g)
      optimizer_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.9, 0.99))
      ema_update = make_ema(net_g)
      lq, gt = images(args.batch, args.patch // SCALE), images(args.batch, args.patch)
      if row in ("grad", "psnr"):

        def l1_backward(run_g=run_g, optimizer_g=optimizer_g, lq=lq, gt=gt):
          optimizer_g.zero_grad(set_to_none=True)
          with autocast():
            loss = F.l1_loss(run_g(lq).float(), gt)
          loss.backward()
          return loss

        def psnr_step(l1_backward=l1_backward, optimizer_g=optimizer_g, ema_update=ema_update):
          loss = l1_backward()
          optimizer_g.step()
          ema_update()
          return loss

        yield measurable(row, l1_backward if row == "grad" else psnr_step, args.batch)
      else:
        net_d = ref.VGGStyleDiscriminator(num_feat=args.d_feat, input_size=args.patch).to(
            device, memory_format=memory_format)
        # D's parameters flip requires_grad every step, which torch.compile would guard on.
        run_d = net_d
        vgg = ref.VGG19FeatureExtractor(layers=("conv5_4",)).eval().requires_grad_(False)
        run_vgg = prepare(vgg)
        optimizer_d = torch.optim.Adam(net_d.parameters(), lr=1e-4, betas=(0.9, 0.99))
        for group_ in optimizer_g.param_groups:
          group_["lr"] = 1e-4

        def bce(logits, target):
          return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(
              logits.float(), target))

        def gan_step(run_g=run_g, lq=lq, gt=gt, ema_update=ema_update, run_vgg=run_vgg):
          # BasicSR ESRGANModel.optimize_parameters: G first with D frozen ...
          net_d.requires_grad_(False)
          optimizer_g.zero_grad(set_to_none=True)
          with autocast():
            output = run_g(lq)
            l_pix = PIXEL_WEIGHT * F.l1_loss(output.float(), gt)
            l_percep = PERCEPTUAL_WEIGHT * F.l1_loss(
                run_vgg(output)["conv5_4"].float(), run_vgg(gt)["conv5_4"].float().detach())
            real_pred = run_d(gt).detach()
            fake_pred = run_d(output)
            l_gan = GAN_WEIGHT * (bce(real_pred - fake_pred.mean(), 0.0) +
                                  bce(fake_pred - real_pred.mean(), 1.0)) / 2
          (l_pix + l_percep + l_gan).backward()
          optimizer_g.step()
          # ... then D, its real and fake halves back-propagated one after the other ...
          net_d.requires_grad_(True)
          optimizer_d.zero_grad(set_to_none=True)
          with autocast():
            fake_pred = run_d(output).detach()
            real_pred = run_d(gt)
            l_d_real = 0.5 * bce(real_pred - fake_pred.mean(), 1.0)
          l_d_real.backward()
          with autocast():
            fake_pred = run_d(output.detach())
            l_d_fake = 0.5 * bce(fake_pred - real_pred.detach().mean(), 0.0)
          l_d_fake.backward()
          optimizer_d.step()
          ema_update()  # ... then the EMA of G.
          return l_d_fake

        yield measurable(row, gan_step, args.batch)
