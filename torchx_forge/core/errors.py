"""Forge's own errors: a problem the user can fix, with a message that says how. Standard library only.

    ForgeError                       any of them; ``torchx forge ...`` and ``torchx cancel`` print it as one line
    ├── ConfigError (ValueError)     bad input: an experiment file key, a runopt, a component argument
    ├── SlurmError                   a Slurm command failed (``transient``: the failure may pass)
    ├── SlurmNotFoundError           the Slurm client tools are not on PATH
    ├── UnknownAppError              an app id neither the records nor Slurm know
    ├── LoginError                   a cluster's SSH login (runopt ``login``) cannot be used
    └── StoreError (OSError)         a state dir on a URL that does not answer (:mod:`torchx_forge.core.storage`)

Every message names the file, key path or option, what was given, what is allowed and what to
do next. None of them is a TorchX exception: where TorchX needs one of its own types (a
component's arguments that do not build an AppDef) or prints nothing but a traceback (its
``status``, ``log`` and ``list`` verbs), :mod:`torchx_forge.torchx_errors` adapts them.
"""

from __future__ import annotations

from typing import Optional, Sequence


class ForgeError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ConfigError(ForgeError, ValueError):
    """Bad user input: an experiment file key, a runopt, a component argument.

    Args:
        where: the key path, option name or ``file:line`` the problem is at.
        msg: what is wrong and what is expected.
    """

    def __init__(self, where: str, msg: str) -> None:
        self.where = where
        self.msg = msg
        super().__init__(f"{where}: {msg}")


class SlurmError(ForgeError):
    """A Slurm command failed; carries the command and Slurm's own message.

    ``transient``: Slurm's message says the failure may pass (a daemon down, restarting or busy).
    ``message``: the whole text, one line, where forge says better than Slurm what failed and what to do.
    """

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int,
        stderr: str,
        stdout: str = "",
        hint: Optional[str] = None,
        transient: bool = False,
        message: Optional[str] = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        self.transient = transient
        self.hint = hint
        self.message = message
        super().__init__(self._text())

    @property
    def first_line(self) -> str:
        """The first line of Slurm's message."""
        return ((self.stderr.strip() or self.stdout.strip() or "(no output)").splitlines() or [""])[0]

    def set_hint(self, hint: str) -> None:
        self.hint = hint
        self.args = (self._text(),)

    def _text(self) -> str:
        if self.message:
            return self.message
        message = (self.stderr.strip() or self.stdout.strip() or "(no output)").replace("\n", "\n  ")
        text = f"`{self.argv[0]}` failed (exit code {self.returncode}): {message}"
        return f"{text}\n{self.hint}" if self.hint else text


class SlurmNotFoundError(ForgeError):
    """The Slurm command line tools are not on PATH."""

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(
            f"`{command}` not found on PATH: the Slurm client tools are missing.\n"
            "On this machine, start the local test cluster with `scripts/local-slurm up`"
            " (from a torchx-forge checkout); on a real cluster, run from a login node"
            " or load your site's Slurm module."
        )


class UnknownAppError(ForgeError):
    """An app id that slurm_forge has no record of and Slurm does not know."""


class LoginError(ForgeError):
    """The SSH login of a cluster (runopt ``login``) cannot be used: its host key is unknown, the
    authentication failed, it does not answer, it closed the connection, or its Python has no
    usable torchx-forge. The message names the destination and what to do."""
