"""Make spyne 2.14 importable on Python 3.12 and later.

spyne 2.14.0 is the last release and vendors an old copy of ``six`` whose
``spyne.util.six.moves`` importer implements only the PEP 302 ``find_module``
API. Python 3.12 dropped that fallback, so ``import spyne`` dies with
``No module named 'spyne.util.six.moves'``. Rather than patching spyne's files
we put a small PEP 451 finder on ``sys.meta_path`` that answers for those
names by delegating to the vendored importer's own table. (Python 3.13 also
removed ``cgi``, which spyne uses for header parsing; the ``legacy-cgi``
dependency brings it back.)

Import this module before anything imports spyne; ``qwc_service.soap`` does.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any, Sequence

_PREFIX = "spyne.util.six.moves"


class _VendoredSixLoader(importlib.abc.Loader):
    def __init__(self, importer: Any) -> None:
        self._importer = importer

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self._importer.load_module(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        """The vendored importer already returned a ready module."""


class _VendoredSixFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_PREFIX):
            return None
        importer = getattr(sys.modules.get("spyne.util.six"), "_importer", None)
        if importer is None or fullname not in importer.known_modules:
            return None
        return importlib.util.spec_from_loader(fullname, _VendoredSixLoader(importer))


def install() -> None:
    """Install the finder once (idempotent); a no-op before Python 3.12."""
    if sys.version_info < (3, 12):
        return
    if not any(isinstance(f, _VendoredSixFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _VendoredSixFinder())


install()
