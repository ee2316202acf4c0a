"""weightselect: initialize smaller models with larger pretrained ones (weight selection, ICLR 2024)."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["select", "__version__"]


def select(*args, **kwargs):
    """Weight selection in one call; see :func:`weightselect.selection.select`."""
    from weightselect.selection import select as _select

    return _select(*args, **kwargs)
