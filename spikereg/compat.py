"""The one place where SpikeReg works around Lava's packaging.

Lava (``lava-nc`` 0.10.0) and lava-dl 0.6.0 are archived upstream and declare
Python < 3.11. On Python 3.11 with a CPU build of torch two things break; both
are fixed here at import time, without touching files in site-packages, and
each fix switches itself off where its problem is absent (a fixed Lava
release, an older Python, a working torchvision):

1. ``lava/magma/compiler/var_model.py`` gives dataclass fields the mutable
   default ``ByteEncoder()``. Python 3.11 rejects unhashable dataclass
   defaults (``ValueError: mutable default ... use default_factory``), so
   ``import lava.magma.compiler`` fails and nothing can run. The fix rewrites
   those defaults to ``field(default_factory=ByteEncoder)`` in the module's
   source as it is loaded -- the change Lava itself would make.
2. ``lava.lib.dl.slayer`` imports its ``object_detection`` subpackage, which
   imports torchvision and OpenCV. The torchvision wheels on the package
   index are CUDA builds that fail to load beside a CPU torch
   (``operator torchvision::nms does not exist``). Registration needs nothing
   from object detection, so when torchvision cannot be imported that
   subpackage is replaced by a stub module that raises a clear ImportError on
   first use.

Every SpikeReg module imports Lava through :func:`import_lava`,
:func:`slayer` or :func:`netx`, which install the fixes first.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import types
from typing import Any

VAR_MODEL = "lava.magma.compiler.var_model"
OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"

# ``x: ByteEncoder = ByteEncoder()``, one field a line, as in lava-nc 0.10.0
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*=\s*)ByteEncoder\(\)\s*$", re.M)


def needs_dataclass_fix(source: str) -> bool:
    """True when ``source`` has the ByteEncoder defaults that Python >= 3.11 rejects."""
    return sys.version_info >= (3, 11) and bool(_MUTABLE_DEFAULT.search(source))


def fix_dataclass_defaults(source: str) -> str:
    """Return ``source`` with ``ByteEncoder()`` field defaults made ``default_factory``."""
    return _MUTABLE_DEFAULT.sub(
        r"\1__import__('dataclasses').field(default_factory=ByteEncoder)", source
    )


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    """Loads Lava's var_model from its own file, with the defaults fixed."""

    def get_data(self, path: str) -> bytes:  # noqa: D401 - loader protocol
        data = super().get_data(path)
        if path.endswith(".py"):
            source = data.decode("utf-8")
            if needs_dataclass_fix(source):
                return fix_dataclass_defaults(source).encode("utf-8")
        return data

    def path_stats(self, path: str) -> dict:
        # Keep the patched module out of Lava's own __pycache__ (it may be read-only
        # and must stay the unpatched byte code for anyone importing Lava without us).
        raise OSError("no bytecode cache for patched module")


def torchvision_works() -> bool:
    """True when torchvision imports (its CUDA wheels fail beside a CPU torch)."""
    if "torchvision" in sys.modules:
        return True
    try:
        importlib.import_module("torchvision")
    except Exception:  # RuntimeError "operator torchvision::nms does not exist", ImportError
        return False
    return True


class _ObjectDetectionStub(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"{OBJECT_DETECTION}.{name} needs a working torchvision, which this "
            "environment lacks; SpikeReg does not use lava-dl's object detection."
        )


class _LavaFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that applies the two fixes to exactly two modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == VAR_MODEL:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or not spec.origin:
                return None
            with open(spec.origin, encoding="utf-8") as handle:
                if not needs_dataclass_fix(handle.read()):
                    return None  # a fixed Lava release: leave it alone
            loader = _PatchedSourceLoader(fullname, spec.origin)
            return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)
        if fullname == OBJECT_DETECTION and not torchvision_works():
            return importlib.machinery.ModuleSpec(fullname, _StubLoader())
        return None


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = _ObjectDetectionStub(spec.name)
        module.__path__ = []  # a package, so ``from . import object_detection`` works
        return module

    def exec_module(self, module):
        return None


_FINDER = _LavaFinder()


def install() -> None:
    """Install the import fixes (idempotent). Must run before Lava is imported."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def import_lava(name: str) -> types.ModuleType:
    """Import a Lava module (e.g. ``lava.magma.core.run_configs``) with the fixes in place."""
    install()
    return importlib.import_module(name)


def slayer() -> types.ModuleType:
    """``lava.lib.dl.slayer``."""
    return import_lava("lava.lib.dl.slayer")


def netx() -> types.ModuleType:
    """``lava.lib.dl.netx``."""
    return import_lava("lava.lib.dl.netx")


install()
