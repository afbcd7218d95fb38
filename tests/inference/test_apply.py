"""inference/apply.py: which compiled program runs a generator. On the CPU, under the trainer's
XLA flags, SRVGGNetCompact's takes YNNPACK's convolutions back (outputs within 1e-6 of the
flags' Eigen ones); RRDBNet, SPAN, other backends and a user's own XLA flags keep the process's."""

import json
import os
import subprocess
import sys

import jax

from esrgan_jax.inference import apply
from esrgan_jax.models import rrdbnet, span, srvgg
from esrgan_jax.runtime import xla_flags
from tests import REPO_ROOT

COMPACT = srvgg.SRVGGNetCompact(num_feat=8, num_conv=2)
OTHERS = (rrdbnet.RRDBNet(num_feat=8, num_block=1, num_grow_ch=4),
          span.SPAN(feature_channels=8, deploy=True))
TRAINERS_FLAGS = " ".join(xla_flags.DEFAULT_FLAGS)

# Under the trainer's flags: per generator, whether it got the library program, whether YNNPACK
# runs in what was compiled, and how far its output is from the process flags' own program.
PROGRAM = """
import json, os
os.environ["JAX_PLATFORMS"] = "cpu"
from esrgan_jax.runtime import xla_flags
xla_flags.apply_defaults()
import jax, numpy as np
from esrgan_jax.inference import apply
from tests.inference.test_apply import COMPACT, OTHERS
x = np.random.default_rng(0).random((1, 10, 12, 3), dtype=np.float32)
found = {}
for generator in (COMPACT,) + OTHERS:
  params = generator.init(jax.random.key(0), x)["params"]
  jitted = apply.jitted_apply(generator)
  compiled = jitted.lower(generator, params, x).compile().as_text()
  plain = jax.jit(lambda p, x: generator.apply({"params": p}, x))(params, x)
  output = apply.apply_generator(generator, params, x)
  found[type(generator).__name__] = [jitted is not apply.JITTED[0], "ynn_fusion" in compiled,
                                     float(np.abs(np.asarray(output) - plain).max())]
print(json.dumps(found))
"""


def test_under_the_trainers_flags_compact_alone_gets_library_convolutions():
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.OPT_OUT_VARIABLE)}
  result = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  found = json.loads(result.stdout.splitlines()[-1])
  library, ynn, difference = found["SRVGGNetCompact"]
  assert library and ynn and difference <= 1e-6
  for name in ("RRDBNet", "SPAN"):
    assert found[name] == [False, False, 0.0], name


def test_the_choice_follows_the_backend_and_the_users_flags(monkeypatch):
  cpu = jax.default_backend() == "cpu"
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/hlo " + TRAINERS_FLAGS)
  assert (apply.jitted_apply(COMPACT) is apply.JITTED[1]) == cpu
  for generator in OTHERS:
    assert apply.jitted_apply(generator) is apply.JITTED[0]
  # The user's own YNNPACK setting, or XLA's defaults (no setting: YNNPACK convolutions already).
  for flags in (TRAINERS_FLAGS + " --xla_cpu_experimental_ynn_fusion_type=-reduce", ""):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert apply.jitted_apply(COMPACT) is apply.JITTED[0], flags


def test_cache_counts_and_clears_both_programs(monkeypatch):
  monkeypatch.setattr(apply, "jitted_apply", lambda generator: apply.JITTED[
      isinstance(generator, srvgg.SRVGGNetCompact)])
  apply.clear_cache()
  x = jax.numpy.zeros((1, 6, 5, 3))
  for generator in (COMPACT, OTHERS[0]):
    params = generator.init(jax.random.key(0), x)["params"]
    apply.apply_generator(generator, params, x)
    apply.apply_generator(generator, params, x)  # cached
  sizes = [jitted._cache_size() for jitted in apply.JITTED]  # pylint: disable=protected-access
  assert sizes == [1, 1]
  assert apply.cache_size() == 2
  apply.clear_cache()
  assert apply.cache_size() == 0
