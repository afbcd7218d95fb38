"""The training loop: exact resume, sharded = unsharded, NaN guard, crash saves, checkpoint policy.

Runs `train.train_and_evaluate` in-process on tiny models (the 4-device run needs its own process,
since the device count is fixed when JAX starts). A persistent compilation cache shared by the
runs of this module keeps repeated runs of one config from compiling again.
"""

import json
import logging as std_logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest
from absl import logging

from configs import esrgan, esrgan_psnr
from esrgan_jax.data import pipeline
from esrgan_jax.runtime import parallel
from esrgan_jax.training import failures, steps, train
from esrgan_jax.training.state import TrainState, build_networks, state_initializer
from esrgan_jax.weights import checkpoints
from esrgan_jax.weights import generator as generator_weights

from tests import REPO_ROOT
PSNR_STEPS = 4
GAN_STEPS = 2


def psnr_config(num_steps: int = PSNR_STEPS):
  config = esrgan_psnr.get_config()
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4)
  config.data.update(patch_size=32, eval_max_images=1, num_workers=2)
  config.eval.num_comparison_images = 1
  config.train.update(batch_size=4, num_steps=num_steps, log_every_steps=1,
                      eval_every_steps=100, checkpoint_every_steps=2, keep_checkpoints=5)
  return config


def gan_config(num_steps: int = GAN_STEPS):
  """The VGG-style discriminator (BatchNorm, 128 px) with a cheap perceptual layer."""
  config = esrgan.get_config()
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4)
  config.data.update(patch_size=128, eval_max_images=1, num_workers=2)
  config.eval.num_comparison_images = 1
  config.discriminator.num_feat = 4
  config.loss.perceptual_layers = {"conv1_2": 1.0}
  config.train.update(batch_size=4, num_steps=num_steps, log_every_steps=1,
                      eval_every_steps=100, checkpoint_every_steps=1, keep_checkpoints=5)
  return config


CONFIGS = {"psnr": psnr_config, "gan": gan_config}


def state_arrays(state: TrainState) -> dict[str, np.ndarray]:
  """Every checkpointed leaf of the state as a host array, keyed by its path."""
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.replace(vgg=None)))
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def assert_bit_identical(actual: dict, expected: dict):
  assert actual.keys() == expected.keys()
  different = [k for k in expected if not np.array_equal(actual[k], expected[k])]
  assert not different, f"leaves differ: {different[:5]}"


def saved_steps(workdir) -> list[int]:
  path = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR)
  return sorted(int(name) for name in os.listdir(path) if name.isdigit())


def fresh_state(config):
  """A freshly initialised state (single device) to restore into."""
  networks = build_networks(config)
  return jax.jit(state_initializer(networks, config))(jax.random.key(0))


pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
  """Starts the 4-device run in its own process at once; it runs beside the in-process tests."""
  directory = tmp_path_factory.mktemp("sharded")
  out_path, log_path = str(directory / "sharded.npz"), directory / "stderr.txt"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT)
  with open(log_path, "w") as log:  # a file: a full pipe would stall the run
    process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--sharded-run",
                                out_path], cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
  yield process, out_path, log_path
  if process.poll() is None:
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory, sharded_run):
  """Each stage trained without interruption: the reference of the resume and sharding tests."""
  del sharded_run  # started first, to overlap with these runs
  runs = {}
  for stage, make_config in CONFIGS.items():
    workdir = str(tmp_path_factory.mktemp(f"straight_{stage}"))
    runs[stage] = (workdir, state_arrays(train.train_and_evaluate(make_config(), workdir)))
  return runs


class InjectedFailure(Exception):
  pass


def patch_train_iterator(monkeypatch, change_batch):
  """Wraps the training input: `change_batch(step, batch)` may alter or raise (step from 0)."""
  create = pipeline.create_train_iterator

  class Wrapped:
    def __init__(self, *args, start_step=0, **kwargs):
      self._inner = create(*args, start_step=start_step, **kwargs)
      self._step = start_step

    def __iter__(self):
      return self

    def __next__(self):
      batch = next(self._inner)
      step, self._step = self._step, self._step + 1
      return change_batch(step, batch)

    def close(self):
      self._inner.close()

  monkeypatch.setattr(pipeline, "create_train_iterator", Wrapped)


def test_both_stages_train_evaluate_and_checkpoint(straight_runs):
  for stage, (workdir, arrays) in straight_runs.items():
    steps_done = PSNR_STEPS if stage == "psnr" else GAN_STEPS
    assert int(arrays[".step"]) == steps_done
    assert steps_done in saved_steps(workdir)
    results = json.loads(open(os.path.join(workdir, "eval", "eval_results.json")).read())
    assert np.isfinite(results["sets"]["bundled"]["mean"]["psnr_y"])
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))


@pytest.mark.parametrize("stage", ["psnr", "gan"])
def test_resumed_run_matches_uninterrupted_run_bit_for_bit(stage, straight_runs, tmp_path):
  """Half the steps, then a fresh train_and_evaluate (new objects) resuming to the end."""
  num_steps = PSNR_STEPS if stage == "psnr" else GAN_STEPS
  workdir = str(tmp_path)
  train.train_and_evaluate(CONFIGS[stage](num_steps // 2), workdir)
  assert saved_steps(workdir)[-1] == num_steps // 2
  resumed = train.train_and_evaluate(CONFIGS[stage](num_steps), workdir)
  assert_bit_identical(state_arrays(resumed), straight_runs[stage][1])


def test_resume_with_accumulation_and_clipping_is_bit_exact(tmp_path):
  """Two micro-batches per step and a clip that binds (the optimiser state's layout is that of
  a run without clipping; see training/optim.py): still the uninterrupted run to the bit."""
  def config(num_steps):
    config = psnr_config(num_steps)
    config.train.grad_accum_steps = 2
    config.optimizer_g.clip_grad_norm = 1e-3
    return config

  straight = state_arrays(train.train_and_evaluate(config(PSNR_STEPS), str(tmp_path / "a")))
  workdir = str(tmp_path / "b")
  train.train_and_evaluate(config(PSNR_STEPS // 2), workdir)
  resumed = train.train_and_evaluate(config(PSNR_STEPS), workdir)
  assert_bit_identical(state_arrays(resumed), straight)


def test_crash_saves_last_step_and_async_checkpoints_restore_exactly(straight_runs, tmp_path,
                                                                     monkeypatch):
  """An input error at step 4 saves step 3; the periodic step 2 was saved asynchronously while
  step 3 ran on donated buffers. Resuming from either gives the uninterrupted run's result."""
  def fail_at_step_4(step, batch):
    if step == 3:
      raise InjectedFailure("input pipeline failed")
    return batch

  workdir = str(tmp_path / "crashed")
  patch_train_iterator(monkeypatch, fail_at_step_4)
  with pytest.raises(InjectedFailure):
    train.train_and_evaluate(psnr_config(), workdir)
  monkeypatch.undo()
  assert saved_steps(workdir) == [2, 3]

  from_step_2 = str(tmp_path / "from_step_2")
  shutil.copytree(workdir, from_step_2)
  shutil.rmtree(os.path.join(from_step_2, checkpoints.CHECKPOINT_SUBDIR, "3"))
  expected = straight_runs["psnr"][1]
  for resume_dir in (workdir, from_step_2):
    assert_bit_identical(state_arrays(train.train_and_evaluate(psnr_config(), resume_dir)),
                         expected)


def test_crash_save_that_fails_in_the_background_is_reported(tmp_path, monkeypatch, caplog):
  """Orbax writes in a background thread; a write that fails there must not be logged as saved,
  and the training error, not the save's, is the one raised."""
  from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top
  commit = atomicity.on_commit_callback

  async def disk_full_at_step_3(tmp_dir, *args, **kwargs):
    if tmp_dir.get_final().name == "3":
      raise OSError("No space left on device")
    return await commit(tmp_dir, *args, **kwargs)

  def fail_at_step_4(step, batch):
    if step == 3:
      raise InjectedFailure("input pipeline failed")
    return batch

  workdir = str(tmp_path)
  patch_train_iterator(monkeypatch, fail_at_step_4)
  monkeypatch.setattr(atomicity, "on_commit_callback", disk_full_at_step_3)
  caplog.set_level(std_logging.INFO)
  with pytest.raises(InjectedFailure):
    train.train_and_evaluate(psnr_config(), workdir)
  monkeypatch.undo()
  assert saved_steps(workdir) == [2]
  messages = [record.getMessage() for record in caplog.records]
  assert not any("saved step" in message for message in messages)
  assert any("Could not save a checkpoint after the error: No space left on device" in message
             for message in messages)


def test_non_finite_loss_stops_after_last_good_checkpoint(tmp_path, monkeypatch):
  def nan_images_at_step_3(step, batch):
    if step == 2:
      batch = dict(batch, hr=np.full_like(batch["hr"], np.nan))
    return batch

  config = psnr_config(num_steps=6)
  config.train.checkpoint_every_steps = 1
  workdir = str(tmp_path)
  patch_train_iterator(monkeypatch, nan_images_at_step_3)
  with pytest.raises(failures.NonFiniteLossError,
                     match=r"at step 3\b.*last good checkpoint is step 2"):
    train.train_and_evaluate(config, workdir)
  monkeypatch.undo()
  assert saved_steps(workdir) == [1, 2]
  manager = checkpoints.create_manager(workdir, keep=5, read_only=True)
  restored = checkpoints.restore(manager, fresh_state(config))
  arrays = state_arrays(restored)
  assert int(arrays[".step"]) == 2
  assert all(np.isfinite(v).all() for v in arrays.values())


def test_non_finite_parameters_are_never_checkpointed(tmp_path, monkeypatch):
  """A step whose loss is finite but whose update is not (an overflowing gradient)."""
  make_step = steps.make_train_step

  def poisoned_make_train_step(networks, config):
    step_fn = make_step(networks, config)

    def step(state, batch, rng):
      new_state, metrics = step_fn(state, batch, rng)
      poison = jax.numpy.where(state.step == 2, np.float32(np.inf), np.float32(1))
      return new_state.replace(generator=jax.tree.map(lambda p: p * poison,
                                                      new_state.generator)), metrics
    return step

  config = psnr_config(num_steps=5)
  config.train.checkpoint_every_steps = 1
  monkeypatch.setattr(steps, "make_train_step", poisoned_make_train_step)
  with pytest.raises(failures.NonFiniteLossError, match=r"parameters after step 3\b"):
    train.train_and_evaluate(config, str(tmp_path))
  assert saved_steps(str(tmp_path)) == [1, 2]


def test_sigterm_saves_current_step_and_stops(tmp_path, monkeypatch):
  """The handler in-process: a SIGTERM during step 2's input stops the loop after a save."""
  def sigterm_at_step_2(step, batch):
    if step == 1:
      os.kill(os.getpid(), signal.SIGTERM)
    return batch

  previous_handler = signal.getsignal(signal.SIGTERM)
  config = psnr_config(num_steps=50)
  config.train.checkpoint_every_steps = 50
  patch_train_iterator(monkeypatch, sigterm_at_step_2)
  state = train.train_and_evaluate(config, str(tmp_path))
  stopped_at = int(state.step)
  # The input runs ahead of the steps, so the flag is seen within a few steps.
  assert 1 <= stopped_at < 10
  assert saved_steps(str(tmp_path)) == [stopped_at]
  assert signal.getsignal(signal.SIGTERM) is previous_handler


def test_keeps_latest_k_and_best_psnr_checkpoint_across_restarts(tmp_path):
  psnr_by_step = {1: 20.0, 2: 25.0, 3: 22.0, 4: None, 5: 21.0, 6: None}

  def save_steps(manager, steps):
    for step in steps:
      psnr = psnr_by_step[step]
      state = TrainState(step=np.int32(step), generator={"w": np.full(3, step, np.float32)},
                         generator_ema={"w": np.zeros(3, np.float32)}, generator_opt_state=())
      checkpoints.save(manager, state, {"arch": {}, "stage": "psnr"},
                       None if psnr is None else {checkpoints.BEST_METRIC: psnr})
      manager.wait_until_finished()
    manager.close()

  save_steps(checkpoints.create_manager(str(tmp_path), keep=2), [1, 2, 3, 4])
  assert saved_steps(str(tmp_path)) == [2, 3, 4]
  # A new manager (a restarted run) still knows step 2's PSNR.
  save_steps(checkpoints.create_manager(str(tmp_path), keep=2), [5, 6])
  # The latest two plus the best PSNR.
  assert saved_steps(str(tmp_path)) == [2, 5, 6]


def test_evaluated_steps_are_checkpointed_with_their_psnr_and_profile_is_written(tmp_path):
  config = psnr_config(num_steps=6)
  config.train.update(eval_every_steps=2, checkpoint_every_steps=100, keep_checkpoints=1,
                      profile_steps=2)
  train.train_and_evaluate(config, str(tmp_path))
  # Step 6 is the latest; the evaluated step with the best PSNR is kept too.
  kept = saved_steps(str(tmp_path))
  assert 6 in kept and len(kept) <= 2 and set(kept) <= {2, 4, 6}, kept
  manager = checkpoints.create_manager(str(tmp_path), keep=1, read_only=True)
  psnrs = {step: manager.metrics(step)[checkpoints.BEST_METRIC] for step in kept}
  assert all(np.isfinite(v) for v in psnrs.values()), psnrs
  assert manager.best_step() == max(psnrs, key=psnrs.get)
  # One trace of steps 4-5 (after PROFILE_WARMUP_STEPS).
  traces = [name for _, _, files in os.walk(tmp_path / "plugins" / "profile") for name in files]
  assert sum(name.endswith(".xplane.pb") for name in traces) == 1, traces


def _sharded_run(out_path: str) -> None:
  """Subprocess body: both stages on 4 CPU devices, final states written to out_path (.npz)."""
  assert jax.device_count() == 4, jax.devices()
  arrays = {}
  for stage, make_config in CONFIGS.items():
    with tempfile.TemporaryDirectory() as workdir:
      state = train.train_and_evaluate(make_config(), workdir)
      shardings = {leaf.sharding for leaf in jax.tree.leaves(state.generator)}
      assert shardings == {parallel.replicated(parallel.create_mesh())}, shardings
      arrays.update({f"{stage}{k}": v for k, v in state_arrays(state).items()})
  np.savez(out_path, **arrays)


def assert_leaves_close(actual: dict, expected: dict, prefix: str, rel: float, atol: float):
  """Each leaf within `rel` of the largest magnitude in its group (plus `atol`).

  A group is one tree of the state (the generator, Adam's first moments of D, ...). Rounding
  errors of a reduction scale with its terms, not with its result, and some results are
  nearly zero: the gradient of a bias whose shift the next BatchNorm removes, or of D's output
  bias, which RaGAN ignores (a shift of every logit cancels). Adam turns such 1e-9 gradients of
  either sign into full-size updates, so an element-wise comparison would only measure noise.
  """
  def group(key):
    return key.split("['")[0]
  scales = {}
  for key, value in expected.items():
    if value.dtype.kind == "f":
      scales[group(key)] = max(scales.get(group(key), 0.0), float(np.max(np.abs(value))))
  for key, value in expected.items():
    if value.dtype.kind != "f":
      np.testing.assert_array_equal(actual[prefix + key], value, err_msg=key)
      continue
    difference = float(np.max(np.abs(actual[prefix + key] - value)))
    allowed = rel * scales[group(key)] + atol
    assert difference <= allowed, f"{prefix} {key}: differs by {difference:.3g} > {allowed:.3g}"


def test_four_devices_match_one_device(straight_runs, sharded_run):
  """Same global batch on 4 CPU devices (batch sharded) and on 1: the same parameters.

  The VGG-style discriminator's BatchNorm must use the statistics of the whole global batch, as
  jit of the global computation does: with 4 devices each would otherwise see one image of the
  real and one of the fake batch, and its running variance would be far off. Those statistics
  are checked at 1e-5 of their largest value (the step-2 statistics come from a D whose step-1
  parameters already differ by reduction order, which moves with the CPU's vector width: 2.4e-6
  on one CI machine); the rest within the reduction-order noise of two steps.
  """
  process, out_path, log_path = sharded_run
  assert process.wait(timeout=600) == 0, log_path.read_text()[-3000:]
  sharded = dict(np.load(out_path))
  psnr, gan = straight_runs["psnr"][1], straight_runs["gan"][1]
  assert_leaves_close(sharded, psnr, "psnr", rel=1e-5, atol=1e-8)
  for key in [k for k in gan if k.startswith(".discriminator_stats")]:
    assert_leaves_close(sharded, {key: gan[key]}, "gan", rel=1e-5, atol=1e-7)
  assert_leaves_close(sharded, gan, "gan", rel=5e-3, atol=1e-7)


def test_checkpoint_manager_drops_orbax_info_lines_but_not_its_warnings(tmp_path):
  checkpoints.create_manager(str(tmp_path), keep=1)
  handler = logging.get_absl_handler()
  orbax_file = os.path.join("site-packages", "orbax", "checkpoint", "checkpoint_manager.py")

  def passes(pathname, level):
    record = std_logging.LogRecord("absl", level, pathname, 1, "message", None, None)
    return all(f.filter(record) for f in handler.filters)
  assert not passes(orbax_file, std_logging.INFO)
  assert passes(orbax_file, std_logging.WARNING)
  assert passes(train.__file__, std_logging.INFO)


def test_relative_workdir_saves_and_loads(tmp_path, monkeypatch):
  # Orbax accepts only absolute local paths; the README's commands use relative workdirs.
  monkeypatch.chdir(tmp_path)
  state = train.train_and_evaluate(psnr_config(num_steps=2), "relative_run")
  assert int(state.step) == 2
  assert sorted(os.listdir(tmp_path / "relative_run" / "checkpoints")) == ["2"]
  params, arch = generator_weights.load_generator("relative_run", which="generator_ema")
  assert arch["num_feat"] == 8
  np.testing.assert_array_equal(params["conv_first"]["kernel"],
                                state.generator_ema["conv_first"]["kernel"])


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--sharded-run":
    logging.set_verbosity(logging.WARNING)
    _sharded_run(sys.argv[2])
  else:
    sys.exit(f"usage: {sys.argv[0]} --sharded-run OUT.npz")
