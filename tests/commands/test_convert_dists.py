"""python -m esrgan_jax.convert --dists: the package's weights.pt plus torchvision's vgg16 .pth."""

import numpy as np
import pytest
import torch

from esrgan_jax import convert
from esrgan_jax.metrics.dists import DistsMetric
from tests.dists_files import write_weight_files


def test_convert_dists_end_to_end_and_its_errors(tmp_path, capsys):
  reference, weights_path, backbone_path = write_weight_files(tmp_path, seed=2)
  out_dir = tmp_path / "dists"
  assert convert.main(["--dists", str(weights_path), str(out_dir), "--backbone",
                       str(backbone_path)]) == 0
  assert capsys.readouterr().out.strip() == f"wrote {out_dir}: DISTS v0.1"
  metric = DistsMetric.from_dir(out_dir)
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 256, (24, 20, 3), np.uint8)
  sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
  with torch.no_grad():
    expected = float(reference(*(torch.from_numpy(x[None] / 255.0).float().permute(0, 3, 1, 2)
                                 for x in (sr, hr)))[0])
  np.testing.assert_allclose(metric(sr, hr), expected, rtol=0, atol=1e-5)

  # An existing output, a truncated backbone: exit 1, one line naming the path, nothing written.
  assert convert.main(["--dists", str(weights_path), str(out_dir), "--backbone",
                       str(backbone_path)]) == 1
  assert f"{out_dir}: output directory already exists" in capsys.readouterr().err
  truncated = tmp_path / "vgg16_truncated.pth"
  truncated.write_bytes(backbone_path.read_bytes()[:4096])
  code = convert.main(["--dists", str(weights_path), str(tmp_path / "out2"), "--backbone",
                       str(truncated)])
  stderr = capsys.readouterr().err.strip()
  assert code == 1 and not (tmp_path / "out2").exists()
  assert "\n" not in stderr and str(truncated) in stderr, stderr
  code = convert.main(["--dists", str(weights_path), str(tmp_path / "out3")])
  stderr = capsys.readouterr().err.strip()
  assert code == 1 and "vgg16" in stderr and str(weights_path) in stderr, stderr
  with pytest.raises(SystemExit) as usage:  # --backbone belongs to --lpips and --dists
    convert.main(["--vgg19", str(backbone_path), str(tmp_path / "out4"), "--backbone",
                  str(backbone_path)])
  assert usage.value.code == 2
  assert "--backbone goes with --lpips or --dists" in capsys.readouterr().err
