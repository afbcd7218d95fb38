"""runtime/tpu_plan.py: slice names, the HBM table, the compiler's refusal, the batch search.

The compiling end (libtpu, a real topology) is tested through the command in
tests/commands/test_plan.py.
"""

import importlib.metadata
import re

import pytest

from esrgan_jax.runtime import tpu_plan
from tests import REPO_ROOT


@pytest.mark.parametrize("text, name, chips, per_host", [
    ("v5e:4x4", "v5e:4x4", 16, (2, 2, 1)),
    ("v5litepod-16", "v5e:4x4", 16, (2, 2, 1)),
    ("v5litepod-8", "v5e:2x4", 8, (2, 4, 1)),  # one host of 8 chips
    ("v6e-256", "v6e:16x16", 256, (2, 2, 1)),
    ("v4-32", "v4:2x2x4", 16, (2, 2, 1)),  # v4-N counts TensorCores, two per chip
    ("v4-8", "v4:2x2x1", 4, (2, 2, 1)),
    ("v5p-128", "v5p:4x4x4", 64, (2, 2, 1)),
    ("v4:2x2x2", "v4:2x2x2", 8, (2, 2, 1)),
])
def test_topologies_and_accelerator_types(text, name, chips, per_host):
  topology = tpu_plan.parse_topology(text)
  assert (topology.name, topology.chips, topology.chips_per_host_bounds()) == (
      name, chips, per_host)


@pytest.mark.parametrize("text, message", [
    ("v9:2x2", "unknown TPU generation 'v9' (known: v4, v5e, v5p, v6e)"),
    ("v4:4x4", "a v4 slice has 3 positive sides, e.g. v4:2x2x4"),
    ("v5litepod-12", "not a slice size this table knows; give its shape instead, e.g. v5e:4x4"),
    ("v4-31", "not a slice size"),
    ("tpu", "give a topology such as v5e:4x4"),
])
def test_bad_topologies_are_one_line_naming_the_flag(text, message):
  with pytest.raises(tpu_plan.PlanError, match=re.escape(f"--topology={text}: ") + ".*"
                     + re.escape(message)):
    tpu_plan.parse_topology(text)


def test_hbm_table():
  assert {g: tpu_plan.parse_topology(f"{g}:2x2" if g in ("v5e", "v6e") else f"{g}:2x2x1")
          .hbm_bytes / 2**30 for g in tpu_plan.HBM_GIB} == {
              "v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}


def test_the_compilers_refusal_says_how_much_it_needed():
  def lower():
    class Lowered:
      def compile(self):
        raise RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory "
                           "required for HLO temporaries (19.63G) exceeds available HBM "
                           "(15.75G).\nmore detail")
    return Lowered()

  with pytest.raises(tpu_plan.OutOfMemory) as caught:
    tpu_plan.compile_for_tpu(lower, "the psnr step")
  assert caught.value.needed == int(19.63 * 2**30)
  assert caught.value.available == int(15.75 * 2**30)

  def broken():
    raise ValueError("Sharding mismatch\n  traceback-ish detail")
  with pytest.raises(tpu_plan.PlanError, match=r"^cannot compile the psnr step for the TPU: "
                     r"Sharding mismatch$"):
    tpu_plan.compile_for_tpu(broken, "the psnr step")


def test_format_bytes():
  assert [tpu_plan.format_bytes(n) for n in (512, 1536, 5 * 2**20, int(4.1 * 2**30))] == [
      "512 B", "1.50 KiB", "5.00 MiB", "4.10 GiB"]


@pytest.mark.parametrize("limit", [0, 1, 5, 37, 38, 100])
def test_largest_doubles_then_bisects(limit):
  candidates = list(range(2, 201, 2))  # e.g. the per-chip batches a pool of 2 slots allows
  calls = []

  def fits(batch):
    calls.append(batch)
    return batch <= limit

  best = tpu_plan.largest(candidates, fits)
  expected = max((c for c in candidates if c <= limit), default=None)
  assert best == expected
  assert len(calls) <= 2 * 7 + 1  # about 2 log2(100)
  assert len(set(calls)) == len(calls)


def test_requirements_tpu_pins_the_libtpu_of_the_pinned_jax():
  pinned = re.search(r"^libtpu==([\w.]+)$", open(f"{REPO_ROOT}/requirements-tpu.txt").read(),
                     re.MULTILINE).group(1)
  tpu_extra = [r for r in importlib.metadata.requires("jax")
               if r.startswith("libtpu") and 'extra == "tpu"' in r]
  spec = re.match(r"libtpu\s*==\s*([\w.*]+)", tpu_extra[0]).group(1)
  assert re.fullmatch(spec.replace(".", r"\.").replace("*", r"[\w.]+"), pinned), (pinned, spec)
  assert importlib.metadata.version("libtpu") == pinned
