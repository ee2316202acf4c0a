"""Weight selection (paper section 3): initialize a smaller model from a larger one of its family.

- :mod:`~weightselect.selection.layers`: which teacher layer feeds each student layer;
- :mod:`~weightselect.selection.families`: which tensor dimension is which named axis;
- :mod:`~weightselect.selection.elements`: how the index set of an axis is chosen;
- :mod:`~weightselect.selection.baselines`: the initializations the paper compares against;
- :mod:`~weightselect.selection.importance`: ``method="activation"``, units ranked on calibration data;
- :mod:`~weightselect.selection.budget`: a student of the teacher's family for a parameter budget;
- :func:`select` runs the three steps; :func:`apply_init` puts an init into a built model.
"""
from weightselect._lazy import lazy_package
from weightselect.selection.names import BASELINES, DATA_METHODS, LAYER_METHODS, METHODS

__all__ = [
    "select",
    "SelectionResult",
    "apply_init",
    "load_init_tensors",
    "apply_baseline",
    "InitMismatchError",
    "Calibration",
    "BASELINES",
    "METHODS",
    "DATA_METHODS",
    "LAYER_METHODS",
]

# torch and timm load when a function is first asked for (the command line starts without them)
_LAZY = {
    "select": "weightselect.selection.select",
    "SelectionResult": "weightselect.selection.select",
    "apply_init": "weightselect.selection.apply",
    "load_init_tensors": "weightselect.selection.apply",
    "InitMismatchError": "weightselect.selection.apply",
    "apply_baseline": "weightselect.selection.baselines",
    "Calibration": "weightselect.selection.importance",
}


lazy_package(__name__, _LAZY)
