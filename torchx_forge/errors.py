"""Errors torchx-forge raises for bad input and for Slurm failures: the names to import.

The hierarchy itself is :mod:`torchx_forge.core.errors` (every error derives from
:class:`ForgeError`, an ``Exception``; a state dir that does not answer is a
:class:`StoreError`, an ``OSError`` too). How the ``torchx`` command line reports them is
:mod:`torchx_forge.torchx_errors`.
"""

from torchx_forge.core.errors import ConfigError, ForgeError, LoginError, SlurmError, SlurmNotFoundError, UnknownAppError
from torchx_forge.core.storage import StoreError, StoreUnreachableError

__all__ = [
    "ConfigError", "ForgeError", "LoginError", "SlurmError", "SlurmNotFoundError", "StoreError", "StoreUnreachableError",
    "UnknownAppError",
]
