"""The names of the selection methods, layer maps and baselines (paper sections 3-4, Table 3).

Light on purpose (no torch): the command line's choices and the workflow's plan-time checks read
them without importing the library.
"""
from __future__ import annotations

__all__ = ["METHODS", "DATA_METHODS", "LAYER_METHODS", "BASELINES", "TEACHER_IDENTITIES"]

# Element selection (section 3; Table 7's pruning methods l1 and magnitude).
METHODS = ("uniform", "consecutive", "random", "random_nocons", "l1", "magnitude")
# Layer selection (section 3, Table 6; Tables 16 and 17 add mid and last).
LAYER_METHODS = ("first", "uniform", "mid", "last")
# Initializations the paper compares against (Tables 3 and 12).
BASELINES = ("random", "xavier", "kaiming", "mimetic")
# How a manifest identifies a teacher file: its full sha256, or its header's sha256 + its size.
TEACHER_IDENTITIES = ("sha256", "header")
# Element selection ranked on calibration data (needs the teacher's forward and the data).
DATA_METHODS = ("activation",)
