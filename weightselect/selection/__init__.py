"""Weight selection (paper section 3): initialize a smaller model from a larger one of its family.

- :mod:`~weightselect.selection.layers`: which teacher layer feeds each student layer;
- :mod:`~weightselect.selection.families`: which tensor dimension is which named axis;
- :mod:`~weightselect.selection.elements`: how the index set of an axis is chosen;
- :mod:`~weightselect.selection.baselines`: the initializations the paper compares against;
- :func:`select` runs the three steps; :func:`apply_init` puts an init into a built model.
"""
from weightselect.selection.apply import InitMismatchError, apply_init
from weightselect.selection.baselines import BASELINES, apply_baseline
from weightselect.selection.elements import METHODS
from weightselect.selection.layers import LAYER_METHODS
from weightselect.selection.select import SelectionResult, select

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
