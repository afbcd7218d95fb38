"""The XLA flags the trainer adds: the user's own settings win, and the pinned jaxlib knows them."""

import io
import os
import subprocess
import sys

import numpy as np

from esrgan_jax.runtime import xla_flags

from tests import REPO_ROOT as REPO


def test_defaults_are_added_after_the_users_flags():
  combined = xla_flags.with_defaults("--xla_dump_to=/tmp/hlo").split()
  assert combined[0] == "--xla_dump_to=/tmp/hlo"
  assert combined[1:] == list(xla_flags.DEFAULT_FLAGS)


def test_a_flag_the_user_sets_keeps_the_users_value():
  user_flag = xla_flags.flag_name(xla_flags.DEFAULT_FLAGS[0]) + "=FUSION"
  combined = xla_flags.with_defaults(user_flag).split()
  assert combined.count(user_flag) == 1
  assert xla_flags.DEFAULT_FLAGS[0] not in combined
  assert xla_flags.with_defaults(" ".join(combined)) == " ".join(combined)  # idempotent


def test_opt_out_leaves_xla_flags_alone(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/hlo")
  monkeypatch.setenv(xla_flags.OPT_OUT_VARIABLE, "1")
  xla_flags.apply_defaults()
  assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/hlo"
  monkeypatch.delenv(xla_flags.OPT_OUT_VARIABLE)
  xla_flags.apply_defaults()
  assert os.environ["XLA_FLAGS"] == xla_flags.with_defaults("--xla_dump_to=/tmp/hlo")


def test_pinned_jaxlib_starts_with_the_defaults_and_they_change_nothing_numerically():
  # XLA aborts at start-up on a flag it does not know, so a stale default would stop every run.
  program = ("import os; from esrgan_jax.runtime import xla_flags; xla_flags.apply_defaults()\n"
             "print(os.environ.get('XLA_FLAGS', ''), file=__import__('sys').stderr)\n"
             "import jax, jax.numpy as jnp, numpy as np\n"
             "x = np.random.default_rng(0).random((1, 12, 12, 5), dtype=np.float32)\n"
             "k = np.random.default_rng(1).random((3, 3, 5, 4), dtype=np.float32)\n"
             "y = jax.jit(lambda x, k: jax.lax.conv_general_dilated(\n"
             "    x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(x, k)\n"
             "np.save(__import__('sys').stdout.buffer, np.asarray(y))\n")

  def run(**env):
    base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True,
                            env=dict(base, JAX_PLATFORMS="cpu", **env), timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    applied = env.get(xla_flags.OPT_OUT_VARIABLE) is None
    assert (xla_flags.DEFAULT_FLAGS[0] in result.stderr.decode()) == applied
    return result.stdout

  with_flags = np.load(io.BytesIO(run()))
  without = np.load(io.BytesIO(run(**{xla_flags.OPT_OUT_VARIABLE: "1"})))
  np.testing.assert_allclose(with_flags, without, rtol=1e-5, atol=1e-5)


def test_library_convolutions_only_where_the_default_took_them_away(monkeypatch):
  default = [f for f in xla_flags.DEFAULT_FLAGS if f.startswith(xla_flags.YNN_FUSION_FLAG)]
  for flags, taken_away in (("", False), (" ".join(xla_flags.DEFAULT_FLAGS), True),
                            ("--xla_dump_to=/tmp/hlo " + default[0], True),
                            (default[0] + " " + xla_flags.YNN_FUSION_FLAG + "=-reduce", False),
                            (xla_flags.YNN_FUSION_FLAG + "=-reduce", False)):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert xla_flags.library_convolutions_taken_away() == taken_away, flags
  # XLA's own defaults in the pinned jaxlib: the default flag takes convolutions out of them.
  assert xla_flags.LIBRARY_CONVOLUTIONS == {
      "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,"
      "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_REDUCE"}


def test_convolutions_taken_away_reads_the_last_ynnpack_setting(monkeypatch):
  for flags, taken in (("", False), (xla_flags.with_defaults(""), True),
                       (f"{xla_flags.YNN_FUSION_FLAG}=-reduce", False),
                       (f"{xla_flags.YNN_FUSION_FLAG}=-individual_dot,-individual_convolution",
                        True)):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert xla_flags.convolutions_taken_away() == taken, flags
