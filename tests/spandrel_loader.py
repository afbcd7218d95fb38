"""spandrel (ComfyUI / chaiNNer's model loader), imported beside a torchvision that cannot load.

spandrel 0.4.2 imports every architecture it knows when it is imported, and two of them name
torchvision at module level:
  spandrel/architectures/LaMa/__arch/LaMa.py        from torchvision.transforms.functional
                                                       import InterpolationMode, rotate
  spandrel/architectures/RestoreFormer/__init__.py  from torchvision.transforms.functional
                                                       import normalize
Nothing else in spandrel imports torchvision. The pinned torchvision's compiled ops do not load
beside the CPU torch wheel (importing it raises "operator torchvision::nms does not exist"), so
`import_spandrel` puts stand-in `torchvision`, `torchvision.transforms` and
`torchvision.transforms.functional` modules holding exactly those three names into sys.modules,
imports spandrel, and then puts sys.modules' torchvision entries back as they were: later imports
of torchvision (by anyone) see the real package, or its real error, never the stand-ins. Only
LaMa's and RestoreFormer's forward passes call the stand-ins, and they raise if ever called; the
architectures these tests load (ESRGAN, Compact, SPAN) never do.
"""

import enum
import sys
import types

# Module -> the names spandrel 0.4.2 imports from it (see the docstring).
_STAND_IN_NAMES = {
    "torchvision": (),
    "torchvision.transforms": (),
    "torchvision.transforms.functional": ("InterpolationMode", "normalize", "rotate"),
}
STAND_IN_DOC = "test stand-in (tests/spandrel_loader.py)"


class _InterpolationMode(enum.Enum):
  """torchvision's enum as LaMa names it (its members are only read in LaMa's forward)."""
  NEAREST = "nearest"
  BILINEAR = "bilinear"
  BICUBIC = "bicubic"


def _not_available(name):
  def stand_in(*args, **kwargs):
    raise RuntimeError(f"torchvision.transforms.functional.{name} is a stand-in in these tests "
                       "(see tests/spandrel_loader.py); no architecture tested here calls it")
  stand_in.__name__ = name
  return stand_in


def _stand_in_modules() -> dict[str, types.ModuleType]:
  modules = {name: types.ModuleType(name, STAND_IN_DOC)
             for name in _STAND_IN_NAMES}
  functional = modules["torchvision.transforms.functional"]
  functional.InterpolationMode = _InterpolationMode
  functional.normalize = _not_available("normalize")
  functional.rotate = _not_available("rotate")
  modules["torchvision"].transforms = modules["torchvision.transforms"]
  modules["torchvision.transforms"].functional = functional
  for name, module in modules.items():
    assert all(hasattr(module, attr) for attr in _STAND_IN_NAMES[name])
  return modules


def _torchvision_entries() -> dict[str, types.ModuleType]:
  return {name: module for name, module in sys.modules.items()
          if name == "torchvision" or name.startswith("torchvision.")}


def import_spandrel() -> types.ModuleType:
  """The spandrel package, imported once per process with the stand-ins in place."""
  if "spandrel" in sys.modules:
    return sys.modules["spandrel"]
  saved = _torchvision_entries()  # e.g. what a failed real import left behind
  for name in saved:
    del sys.modules[name]
  sys.modules.update(_stand_in_modules())
  try:
    import spandrel  # pylint: disable=import-outside-toplevel
  finally:
    for name in _torchvision_entries():
      del sys.modules[name]
    sys.modules.update(saved)
  return spandrel
