"""Parameter trees: the shapes a module expects, and how two trees or two key lists differ.

Shapes always come from `jax.eval_shape` of the module itself, so no file restates a network's
architecture; comparing against them costs no computation.
"""

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

_NAMES_SHOWN = 5


def variable_shapes(module, *input_shapes: Sequence[int],
                    **kwargs) -> dict[tuple[str, ...], tuple[int, ...]]:
  """{(collection, module..., leaf): shape} of `module.init` on zero inputs of `input_shapes`."""
  inputs = [jnp.zeros(shape, jnp.float32) for shape in input_shapes]
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs, **kwargs))
  return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(variables).items()}


def shape_tree(module, *input_shapes: Sequence[int], **kwargs) -> dict[str, Any]:
  """The module's variables, every collection, as a nested dict of shape tuples."""
  return traverse_util.unflatten_dict(variable_shapes(module, *input_shapes, **kwargs))


def preview(names) -> str:
  """Up to five names, and how many there are in all when there are more."""
  names = list(names)
  shown = ", ".join(names[:_NAMES_SHOWN])
  return shown + (f", ... ({len(names)} in all)" if len(names) > _NAMES_SHOWN else "")


def describe_key_mismatch(first: Sequence[str], second: Sequence[str],
                          only_in_first: Callable[[list[str]], str],
                          only_in_second: Callable[[list[str]], str]) -> str | None:
  """How two key lists differ, or None when they hold the same keys.

  `only_in_first` words the keys of `first` that `second` lacks (e.g. keys a state dict misses),
  `only_in_second` the reverse; both lists keep their order and the parts are joined by '; '.
  """
  first_set, second_set = set(first), set(second)
  parts = []
  if in_first := [k for k in first if k not in second_set]:
    parts.append(only_in_first(in_first))
  if in_second := [k for k in second if k not in first_set]:
    parts.append(only_in_second(in_second))
  return "; ".join(parts) or None


def _shapes_by_path(tree) -> dict[str, tuple[int, ...]]:
  is_shape = lambda x: isinstance(x, tuple) and all(isinstance(d, int) for d in x)
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_shape)
  return {"/".join(str(getattr(k, "key", k)) for k in path):
          leaf if is_shape(leaf) else tuple(np.shape(leaf)) for path, leaf in flat}


def tree_difference(first, second, first_name: str = "first",
                    second_name: str = "second") -> str | None:
  """How two trees (of arrays or of shape tuples) differ in paths or leaf shapes, or None."""
  if not isinstance(second, Mapping):
    return f"the {second_name} is a {type(second).__name__}, not a parameter tree"
  first, second = _shapes_by_path(first), _shapes_by_path(second)

  def only_in(name):
    return lambda paths: f"{len(paths)} parameter(s) only in the {name}, e.g. {paths[0]}"

  mismatch = describe_key_mismatch(sorted(first), sorted(second), only_in(first_name),
                                   only_in(second_name))
  if mismatch:
    return mismatch
  for path in sorted(first):
    if first[path] != second[path]:
      return f"{path} has shape {first[path]} vs {second[path]}"
  return None
