"""Packages whose public names load on first use, so that the command line starts without torch.

``lazy_package(__name__, {name: module})`` gives the package a module ``__getattr__`` that imports
``module`` when ``name`` is first asked for, and keeps a public function the same when a submodule
of the same name is imported (``weightselect.selection.select`` the function, not the module
``select.py``; the import system would otherwise set the package attribute to the submodule).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Mapping

__all__ = ["lazy_package"]


class _LazyPackage(types.ModuleType):
    _lazy: Mapping[str, str] = {}

    def __getattr__(self, name):
        if name in self._lazy:
            value = getattr(importlib.import_module(self._lazy[name]), name)
            types.ModuleType.__setattr__(self, name, value)
            return value
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in self._lazy and isinstance(value, types.ModuleType):
            return  # a submodule named like a public function: keep the function
        super().__setattr__(name, value)


def lazy_package(name: str, lazy: Mapping[str, str]) -> None:
    """Make package ``name`` load each of ``lazy``'s names from its module on first use."""
    module = sys.modules[name]
    module.__class__ = _LazyPackage
    types.ModuleType.__setattr__(module, "_lazy", dict(lazy))
