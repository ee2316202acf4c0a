"""Weight selection (paper section 3): initialize a smaller model from a larger one of its family.

- :mod:`~weightselect.selection.layers`: which teacher layer feeds each student layer;
- :mod:`~weightselect.selection.families`: which tensor dimension is which named axis;
- :mod:`~weightselect.selection.elements`: how the index set of an axis is chosen;
- :mod:`~weightselect.selection.baselines`: the initializations the paper compares against;
- :func:`select` runs the three steps; :func:`apply_init` puts an init into a built model.
"""
import sys
import types

from weightselect.selection.names import BASELINES, LAYER_METHODS, METHODS

__all__ = [
    "select",
    "SelectionResult",
    "apply_init",
    "apply_baseline",
    "InitMismatchError",
    "BASELINES",
    "METHODS",
    "LAYER_METHODS",
]

# torch and timm load when a function is first asked for (the command line starts without them)
_LAZY = {
    "select": "weightselect.selection.select",
    "SelectionResult": "weightselect.selection.select",
    "apply_init": "weightselect.selection.apply",
    "InitMismatchError": "weightselect.selection.apply",
    "apply_baseline": "weightselect.selection.baselines",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """This package, whose ``select`` stays the function when the submodule ``select`` is imported
    (the import system would otherwise set the package attribute to the submodule)."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
