"""The package's import graph: every module imports, no cycle, and the one-way rules hold.

The graph is read from each module's source with `ast` (imports inside functions count too), so a
cycle hidden behind a lazy import is found even though Python would tolerate it at run time.
"""

import ast
import importlib
import os
import pkgutil

import esrgan_jax

PACKAGE = "esrgan_jax"
# (importer prefix, prefixes it must not import): each job's room looks only at the rooms below it.
_LIBRARIES = ("esrgan_jax.data", "esrgan_jax.models", "esrgan_jax.weights", "esrgan_jax.metrics",
              "esrgan_jax.inference", "esrgan_jax.evaluation", "esrgan_jax.training",
              "esrgan_jax.runtime")
COMMANDS = ("esrgan_jax.main", "esrgan_jax.upscale", "esrgan_jax.convert", "esrgan_jax.interpolate",
            "esrgan_jax.degrade", "esrgan_jax.prepare", "esrgan_jax.plan", "esrgan_jax.compare",
            "esrgan_jax.metrics.cli",
            "esrgan_jax.metrics.__main__")
FORBIDDEN = (
    ("esrgan_jax.models", ("esrgan_jax.weights", "esrgan_jax.data", "esrgan_jax.training",
                           "esrgan_jax.evaluation", "esrgan_jax.inference", "esrgan_jax.runtime",
                           "esrgan_jax.metrics")),
    ("esrgan_jax.data", ("esrgan_jax.models", "esrgan_jax.weights", "esrgan_jax.training",
                         "esrgan_jax.evaluation", "esrgan_jax.inference")),
    ("esrgan_jax.weights", ("esrgan_jax.training", "esrgan_jax.evaluation",
                            "esrgan_jax.inference", "esrgan_jax.data")),
    ("esrgan_jax.metrics", ("esrgan_jax.training", "esrgan_jax.evaluation",
                            "esrgan_jax.inference")),
    ("esrgan_jax.inference", ("esrgan_jax.training", "esrgan_jax.evaluation")),
    ("esrgan_jax.evaluation", ("esrgan_jax.training",)),
    ("esrgan_jax.runtime", ("esrgan_jax.data", "esrgan_jax.models", "esrgan_jax.weights",
                            "esrgan_jax.training", "esrgan_jax.evaluation",
                            "esrgan_jax.inference")),
    ("esrgan_jax.training.losses", ("esrgan_jax.data",)),
    ("esrgan_jax.training.steps", ("esrgan_jax.data",)),
) + tuple((library, COMMANDS + ("esrgan_jax.config_checks",)) for library in _LIBRARIES
              ) + (("esrgan_jax.cli", COMMANDS + ("esrgan_jax.config_checks",) + _LIBRARIES),
                   ("esrgan_jax.config_checks", COMMANDS))


def module_files() -> dict[str, str]:
  files = {PACKAGE: esrgan_jax.__file__}
  for info in pkgutil.walk_packages(esrgan_jax.__path__, prefix=f"{PACKAGE}."):
    spec = info.module_finder.find_spec(info.name)
    files[info.name] = spec.origin
  return files


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
  if not node.level:
    return node.module or ""
  base = module.split(".")
  base = base if is_package else base[:-1]
  base = base[:len(base) - (node.level - 1)]
  return ".".join(base + ([node.module] if node.module else []))


def imported_modules(module: str, path: str, known: set[str]) -> set[str]:
  """The package modules `module` imports anywhere in its source (`from a import b`: a.b if b
  is a module, else a)."""
  with open(path, encoding="utf-8") as file:
    tree = ast.parse(file.read(), path)
  is_package = os.path.basename(path) == "__init__.py"
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      source = _resolve(module, is_package, node)
      names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
               for alias in node.names]
    else:
      continue
    found.update(name for name in names if name in known and name != module)
  return found


def import_graph() -> dict[str, set[str]]:
  files = module_files()
  known = set(files)
  return {module: imported_modules(module, path, known) for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle as [a, b, ..., a], or None (depth-first search with colours)."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for child in sorted(graph[node]):
      if state.get(child) == "open":
        return stack[stack.index(child):] + [child]
      if child not in state and (cycle := visit(child)):
        return cycle
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def _is_under(name: str, prefix: str) -> bool:
  return name == prefix or name.startswith(prefix + ".")


def test_every_module_imports():
  for module in module_files():
    importlib.import_module(module)


def test_no_import_cycle():
  assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_sees_lazy_imports(tmp_path):
  # A cycle made by an import inside a function is still a cycle of the graph.
  (tmp_path / "a.py").write_text("def f():\n  from esrgan_jax import b\n")
  (tmp_path / "b.py").write_text("import esrgan_jax.a\n")
  known = {"esrgan_jax.a", "esrgan_jax.b"}
  graph = {name: imported_modules(name, tmp_path / f"{name[-1]}.py", known) for name in known}
  assert graph == {"esrgan_jax.a": {"esrgan_jax.b"}, "esrgan_jax.b": {"esrgan_jax.a"}}
  assert find_cycle(graph) == ["esrgan_jax.a", "esrgan_jax.b", "esrgan_jax.a"]


def test_dependencies_point_one_way():
  graph = import_graph()
  broken = [f"{importer} imports {imported}"
            for importer, imports in graph.items() for imported in sorted(imports)
            for prefix, banned in FORBIDDEN if _is_under(importer, prefix)
            for ban in banned if _is_under(imported, ban) and importer not in COMMANDS]
  assert not broken, "; ".join(broken)
  # The rules are checked against real edges: the graph sees the weights -> models import.
  assert "esrgan_jax.models" in graph["esrgan_jax.weights.generator"]
  assert "esrgan_jax.evaluation.evaluate" in graph["esrgan_jax.training.train"]


def test_top_level_modules_are_commands():
  """The package's top level holds the `python -m esrgan_jax.X` commands, cli.py (their shared
  exit convention) and config_checks.py (the one validator); libraries live in folders."""
  top = {name for name in module_files() if name.count(".") == 1 and
         not os.path.basename(module_files()[name]) == "__init__.py"}
  commands = {name for name in COMMANDS if name.count(".") == 1}
  assert top == commands | {"esrgan_jax.cli", "esrgan_jax.config_checks"}
