"""Lazy imports of the optional environment packages, with an error that says what to install.

Every external adapter (SMAC, SMAX, PettingZoo, gymnasium multi-agent) imports its package through
`require` inside its constructor, so `import envs` never pulls in jax, pettingzoo or smac.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingPackageError(ImportError):
    """An optional environment package is not installed; the message carries the install line."""


def require(module: str, install: str, why: str = "") -> ModuleType:
    """Import `module`, or raise MissingPackageError naming `install` (the exact pip line) and `why`."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        reason = f"\n{why}" if why else ""
        raise MissingPackageError(
            f"This environment needs the Python module `{module}`, which could not be imported "
            f"({type(error).__name__}: {error}). Install it with:\n    {install}{reason}"
        ) from error
