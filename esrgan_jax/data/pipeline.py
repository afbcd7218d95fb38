"""The training input pipeline: sampling, sharding, crops, batches, prefetch onto the mesh.

What the trainer calls (with a `config.data` of configs/default.py, checked by
esrgan_jax/config_checks.py; this module checks only the files it reads):
- `create_train_iterator(...)`: an endless iterator of process-local NumPy batches
  {'lr': (B_local, p/s, p/s, 3), 'hr': (B_local, p, p, 3)}, float32 in [0, 1], NHWC.
- `prefetch_to_mesh(...)`: those batches as global jax.Arrays sharded over the mesh's 'data' axis.

GT-only mode (`config.data.lr_source='degradation'`, Real-ESRGAN's dataset): batches are
{'hr': (B_local, S, S, 3)} uint8 with S = config.data.crop_pad_size, no LR: each image is
reflect-padded when smaller than S, cropped at a random position and flipped (hflip, and rot90
only with use_rot, which Real-ESRGAN leaves off); LR images of the source go unused. The train
step degrades, crops and pools on the device (esrgan_jax/training/realworld_batch.py). uint8 because the
device decodes it anyway: a quarter of the host-to-device bytes of float32.

`config.data.channel_shuffle` (the demos) permutes each example's RGB channels at random after
its flips, LR and HR alike, drawn last so that crops and flips stay what they are without it.

How a batch is drawn (deterministic, resumable, independent of the number of processes):
the global batch has B slots. Slot g owns a *stratum* of the dataset, a contiguous block of about
N / B images (images sorted by file name, or in TFDS record order), and walks through it in a
fresh random order each time it has used every image of it: at step s it takes position s of the
sequence perm(seed, g, 0) ++ perm(seed, g, 1) ++ ... of its stratum. The crop position and flips of
slot g at step s come from a generator seeded with (seed, s, g). So the batch of step s depends only
on (seed, s) and the data; restarting at step s gives exactly the batches an uninterrupted run saw
from step s on, with no state to checkpoint besides the step.

Process p of P builds slots [p * B/P, (p + 1) * B/P) -- the rows of the global batch that
`make_array_from_process_local_data` puts on its devices with the usual process-major device
order -- and therefore reads only the union of those slots' strata, a contiguous 1/P of the data
(as `tfds.split_for_jax_process` would, but with boundaries aligned to the strata, see
`SlotSampler`). The global batch of a step is the same for any P that divides B, so a run gives
the same training data on 1 CPU or on a pod.

When the dataset has fewer than `min_images_per_slot * B` images, strata would be so small that
the images of short strata (sizes differ by at most one) would be seen noticeably more often; then
every slot walks the whole dataset instead and every process reads all of it (it is small).

An unreadable image (on_bad_image='skip') or one smaller than the patch (on_small_image='skip') is
left out with a warning naming it, and its slot takes the next image of its sequence; whether an
image is skipped depends on the file alone, so this keeps every property above.

LR made on the fly is MATLAB's bicubic downscaling of the whole (mod-cropped) HR image, what
DIV2K's LR files are: computed once per image when images are cached, otherwise per patch from
the HR patch plus a few LR pixels of surrounding image (`bicubic.bicubic_lr_patch`), which gives
the same pixels.
"""

import collections
import concurrent.futures
import os
import queue
import threading
from typing import Dict, Iterator, Optional, Sequence, Tuple

from absl import logging
import jax
import numpy as np

from esrgan_jax.data import datasets, prepared
from esrgan_jax.data.augment import apply_flips, augment_pair, crop_or_pad, draw_flips, mod_crop
from esrgan_jax.data.augment import pad_to_size, paired_random_crop, random_crop_position
from esrgan_jax.data.bicubic import bicubic_lr_image, bicubic_lr_patch
from esrgan_jax.data.images import ImageReadError

DATASETS = ("bundled", "folder", "div2k", "prepared")
LR_SOURCES = ("bicubic", "degradation")
EVAL_LR_SOURCES = ("bicubic", "degradation")  # config.data.eval_lr
# Distinct SeedSequence streams for the two uses of randomness.
_CROP_STREAM = 0
_ORDER_STREAM = 1


def _check_arguments(global_batch_size: int, process_index: int, process_count: int) -> None:
  """The caller's arguments; config fields are checked by esrgan_jax/config_checks.py."""
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(f"global batch size {global_batch_size} must be a positive multiple of the "
                     f"number of processes {process_count}")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process index {process_index} is not in [0, {process_count})")


class SlotSampler:
  """Which image each slot of the global batch uses at each step (see the module docstring)."""

  def __init__(self, num_images: int, global_batch_size: int, seed: int,
               min_images_per_slot: int):
    if num_images <= 0:
      raise ValueError("the training dataset has no images")
    self.num_images = num_images
    self.global_batch_size = global_batch_size
    self.seed = int(seed) % 2**63  # SeedSequence wants non-negative entropy.
    self.sharded = num_images >= max(1, min_images_per_slot) * global_batch_size
    self._permutations: Dict[int, Tuple[int, np.ndarray]] = {}  # slot -> (epoch, permutation)

  def stratum(self, slot: int) -> Tuple[int, int]:
    """[start, stop) of the images slot `slot` draws from."""
    if not self.sharded:
      return 0, self.num_images
    # Floor boundaries: a block of B/P consecutive slots covers images [p*N/P, (p+1)*N/P).
    return (slot * self.num_images // self.global_batch_size,
            (slot + 1) * self.num_images // self.global_batch_size)

  def image_range(self, slots: Sequence[int]) -> Tuple[int, int]:
    """[start, stop) of the images any of `slots` draws from (contiguous slots only)."""
    return self.stratum(slots[0])[0], self.stratum(slots[-1])[1]

  def candidate(self, slot: int, position: int) -> int:
    """Image at `position` of the slot's sequence of per-epoch permutations of its stratum."""
    start, stop = self.stratum(slot)
    size = stop - start
    epoch, offset = divmod(position, size)
    cached = self._permutations.get(slot)
    if cached is None or cached[0] != epoch:
      rng = np.random.default_rng([self.seed, _ORDER_STREAM, slot, epoch])
      cached = (epoch, rng.permutation(size))
      self._permutations[slot] = cached  # One epoch per slot: memory stays O(N).
    return start + int(cached[1][offset])


class ImageStore:
  """Decoded, mod-cropped (and paired or padded) training images of one process's range.

  `get(i)` gives (hr, lr or None) or None when image i is skipped. With cache_decoded the whole
  range is decoded up front in the worker threads; otherwise each call decodes again (only the
  fact that an image is skipped is remembered).
  """

  def __init__(self, source, start: int, stop: int, *, scale: int, patch_size: int,
               on_bad_image: str, on_small_image: str, cache_decoded: bool,
               executor: concurrent.futures.Executor, gt_only: bool = False):
    self.source = source
    self._gt_only = gt_only
    self.start, self.stop = start, stop
    self._scale = scale
    self._patch_size = patch_size
    self._on_bad_image = on_bad_image
    self._on_small_image = on_small_image
    self._skipped = set()
    self._warned = set()
    self._lock = threading.Lock()
    self._cache_decoded = cache_decoded
    source.prefetch_range(start, stop)
    self._cache = None
    if cache_decoded:
      indices = range(start, stop)
      self._cache = dict(zip(indices, executor.map(self._prepare, indices)))
      source.release_prefetched()

  def get(self, index: int):
    if self._cache is not None:
      return self._cache[index]
    if index in self._skipped:
      return None
    return self._prepare(index)

  def _skip(self, index: int, message: str) -> None:
    with self._lock:
      self._skipped.add(index)
      first_time = index not in self._warned
      self._warned.add(index)
    if first_time:
      logging.warning("%s", message)

  def _prepare(self, index: int):
    try:
      hr, lr = self.source.load(index)
    except ImageReadError as e:
      if self._on_bad_image == "error":
        raise
      self._skip(index, f"skipping unreadable training image: {e}")
      return None
    if self._gt_only:
      # Whole images; make_example crops or pads each use, as Real-ESRGAN's dataset does.
      return hr, None
    scale, patch = self._scale, self._patch_size
    if lr is not None:
      hr = datasets.pair_images(hr, lr, scale, self.source.name(index),
                               self.source.lr_name(index))
      small = min(lr.shape[:2]) < patch // scale
    else:
      small = min(hr.shape[:2]) < patch
    if small:
      if self._on_small_image == "skip":
        self._skip(index, f"skipping training image {self.source.name(index)}: "
                   f"{hr.shape[0]}x{hr.shape[1]} is smaller than the {patch}x{patch} HR patch "
                   "(set config.data.on_small_image='pad' to reflect-pad it instead)")
        return None
      if lr is not None:
        lr = pad_to_size(lr, patch // scale, patch // scale)
        hr = pad_to_size(hr, lr.shape[0] * scale, lr.shape[1] * scale)
      else:
        hr = pad_to_size(hr, patch, patch)
    if lr is None:
      hr = mod_crop(hr, scale)
      if self._cache_decoded:
        # Cached images get their whole LR once: cheaper than a bicubic per patch, same pixels.
        lr = bicubic_lr_image(hr, scale)
    return hr, lr


class TrainIterator:
  """Endless iterator of process-local batches, built ahead in a thread pool.

  `step` is the step of the next batch. Call `close()` (or use as a context manager) to stop the
  worker threads early.
  """

  def __init__(self, store: ImageStore, sampler: SlotSampler, slots: Sequence[int], *, scale: int,
               patch_size: int, use_hflip: bool, use_rot: bool, start_step: int,
               prefetch_batches: int, executor: concurrent.futures.ThreadPoolExecutor,
               gt_only: bool = False, channel_shuffle: bool = False):
    self._store = store
    self._channel_shuffle = channel_shuffle
    self._gt_only = gt_only
    self._sampler = sampler
    self._slots = list(slots)
    self._scale = scale
    self._patch_size = patch_size
    self._use_hflip = use_hflip
    self._use_rot = use_rot
    self._executor = executor
    self._prefetch = max(1, prefetch_batches)
    self._pending = collections.deque()
    self._next_to_submit = start_step
    self.step = start_step

  def __iter__(self):
    return self

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()

  def __next__(self) -> Dict[str, np.ndarray]:
    while len(self._pending) < self._prefetch:
      step = self._next_to_submit
      self._pending.append(
          [self._executor.submit(self.make_example, step, slot) for slot in self._slots])
      self._next_to_submit += 1
    examples = [future.result() for future in self._pending.popleft()]
    self.step += 1
    if self._gt_only:
      return {"hr": np.stack(examples)}
    return {"lr": np.stack([lr for lr, _ in examples]),
            "hr": np.stack([hr for _, hr in examples])}

  def close(self) -> None:
    for futures in self._pending:
      for future in futures:
        future.cancel()
    self._pending.clear()
    self._executor.shutdown(wait=False, cancel_futures=True)

  def _image_for(self, step: int, slot: int):
    start, stop = self._sampler.stratum(slot)
    # Two stratum lengths of positions contain a whole epoch, so they try every image.
    for position in range(step, step + 2 * (stop - start)):
      image = self._store.get(self._sampler.candidate(slot, position))
      if image is not None:
        return image
    raise ValueError(f"every training image batch slot {slot} draws from was skipped: "
                     f"{self._store.source.name(start)} ... {self._store.source.name(stop - 1)}")

  def _channel_order(self, rng: np.random.Generator):
    """The example's channel order; drawn after every other draw of the example, so switching
    channel_shuffle on changes nothing else."""
    return rng.permutation(3) if self._channel_shuffle else slice(None)

  def make_example(self, step: int, slot: int):
    """(lr, hr) float32 patches of global batch slot `slot` at `step`; GT-only: the uint8 GT."""
    hr, lr = self._image_for(step, slot)
    rng = np.random.default_rng([self._sampler.seed, _CROP_STREAM, step, slot])
    if self._gt_only:
      flips = draw_flips(self._use_hflip, self._use_rot, rng)
      gt = apply_flips(crop_or_pad(hr, self._patch_size, rng), *flips)
      return np.ascontiguousarray(gt[..., self._channel_order(rng)])
    scale, patch = self._scale, self._patch_size
    if lr is None:
      lr_patch_size = patch // scale
      top, left = random_crop_position(hr.shape[0] // scale, hr.shape[1] // scale, lr_patch_size,
                                       rng)
      hr_patch = hr[top * scale:top * scale + patch, left * scale:left * scale + patch]
      lr_patch = bicubic_lr_patch(hr, top, left, lr_patch_size, lr_patch_size, scale)
    else:
      hr_patch, lr_patch = paired_random_crop(hr, lr, patch, scale, rng)
    hr_patch, lr_patch = augment_pair(hr_patch, lr_patch, self._use_hflip, self._use_rot, rng)
    order = self._channel_order(rng)  # the same for both patches
    hr_patch, lr_patch = hr_patch[..., order], lr_patch[..., order]
    return (lr_patch.astype(np.float32) * np.float32(1 / 255),
            hr_patch.astype(np.float32) * np.float32(1 / 255))


def _open_train_source(data_config, scale: int, process_count: int):
  if data_config.dataset == "bundled":
    return datasets.bundled_source(data_config.bundled_photos)
  if data_config.dataset == "folder":
    return datasets.folder_source(data_config.hr_dir, data_config.lr_dir, scale)
  if data_config.dataset == "prepared":
    return prepared.prepared_source(data_config.prepared_dir, scale)
  # Several processes must not prepare one data dir at once: multi-host runs prepare it first.
  prepare = process_count == 1 and (data_config.tfds_download or bool(data_config.tfds_manual_dir))
  builder = datasets.open_tfds_builder(
      data_config.tfds_name, data_dir=data_config.tfds_data_dir,
      manual_dir=data_config.tfds_manual_dir, prepare=prepare)
  return datasets.TfdsSource(builder, "train")


def _num_workers(data_config) -> int:
  if data_config.num_workers:
    return int(data_config.num_workers)
  return min(16, os.cpu_count() or 1)


def create_train_iterator(data_config, *, scale: int, global_batch_size: int, seed: int,
                          start_step: int = 0, process_index: Optional[int] = None,
                          process_count: Optional[int] = None) -> TrainIterator:
  """The process-local training batches of steps start_step, start_step + 1, ...

  Opens (and with cache_decoded, decodes) the data now, so that a missing dataset or a bad pair
  fails before training starts. See the module docstring for what each batch holds.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  _check_arguments(global_batch_size, process_index, process_count)
  source = _open_train_source(data_config, scale, process_count)
  data_seed = seed if data_config.shuffle_seed is None else data_config.shuffle_seed
  sampler = SlotSampler(source.num_images, global_batch_size, data_seed,
                        data_config.min_images_per_slot)
  local_batch_size = global_batch_size // process_count
  slots = range(process_index * local_batch_size, (process_index + 1) * local_batch_size)
  start, stop = sampler.image_range(slots)
  executor = concurrent.futures.ThreadPoolExecutor(_num_workers(data_config),
                                                   thread_name_prefix="esrgan_input")
  gt_only = data_config.lr_source == "degradation"
  # GT-only batches hold whole crop_pad_size GT squares; the device crops patch_size from them.
  patch_size = data_config.crop_pad_size if gt_only else data_config.patch_size
  store = ImageStore(source, start, stop, scale=scale, patch_size=patch_size,
                     on_bad_image=data_config.on_bad_image,
                     on_small_image=data_config.on_small_image,
                     cache_decoded=data_config.cache_decoded, executor=executor, gt_only=gt_only)
  logging.info("training data: %s, %d images; process %d/%d reads images [%d, %d) for batch "
               "slots [%d, %d); starting at step %d", source.description, source.num_images,
               process_index, process_count, start, stop, slots[0], slots[-1] + 1, start_step)
  return TrainIterator(store, sampler, slots, scale=scale, patch_size=patch_size,
                       use_hflip=data_config.use_hflip, use_rot=data_config.use_rot,
                       start_step=start_step, prefetch_batches=data_config.prefetch_batches,
                       executor=executor, gt_only=gt_only,
                       channel_shuffle=data_config.channel_shuffle)


def global_batch_spec(data_config, *, scale: int,
                      global_batch_size: int) -> Dict[str, Tuple[Tuple[int, ...], np.dtype]]:
  """{key: (shape, dtype)} of the global batch that the processes' iterators make together."""
  if data_config.lr_source == "degradation":
    size = data_config.crop_pad_size
    return {"hr": ((global_batch_size, size, size, 3), np.dtype(np.uint8))}
  patch = data_config.patch_size
  return {"lr": ((global_batch_size, patch // scale, patch // scale, 3), np.dtype(np.float32)),
          "hr": ((global_batch_size, patch, patch, 3), np.dtype(np.float32))}


def prefetch_to_mesh(iterator: Iterator[Dict[str, np.ndarray]],
                     sharding: jax.sharding.NamedSharding,
                     buffer_size: int = 2) -> Iterator[Dict[str, jax.Array]]:
  """Global jax.Arrays of the process-local batches, transferred ahead in a background thread.

  Each process passes its own rows; `jax.make_array_from_process_local_data` assembles the global
  batch (batch axis sharded as `sharding` says, normally over the mesh's 'data' axis). An error
  in the input pipeline is re-raised here, in the training loop's thread.
  """
  buffer = queue.Queue(maxsize=max(1, buffer_size))
  stop = threading.Event()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        buffer.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      for batch in iterator:
        arrays = {key: jax.make_array_from_process_local_data(sharding, value)
                  for key, value in batch.items()}
        if not put(("batch", arrays)):
          return
      put(("end", None))
    except BaseException as e:  # Handed to the consumer, which re-raises it.
      put(("error", e))

  thread = threading.Thread(target=produce, name="prefetch_to_mesh", daemon=True)
  thread.start()
  try:
    while True:
      kind, value = buffer.get()
      if kind == "end":
        return
      if kind == "error":
        raise value
      yield value
  finally:
    stop.set()
    # A producer still inside JAX when the interpreter exits aborts the process; let it finish.
    thread.join(timeout=30)
