"""A cluster's login node reached with the user's own OpenSSH, over one multiplexed connection.

Runopt ``login`` names an SSH destination: anything ``ssh`` accepts as a host, a ``Host`` alias
of ``~/.ssh/config`` above all (with its ProxyJump, port, user and key). Every call runs the
user's ``ssh`` with their configuration, agent and keys, through one master connection
(``ControlMaster=auto``, ``ControlPersist``): the first call opens it (a second factor is asked
once), the others reuse it. Host keys are checked as the user's configuration says; forge never
turns the checking off.

A command line crosses two shells: ours hands ``ssh`` one string, which the login's shell parses
again. :meth:`Login.run` quotes every word for that second parse (:func:`shlex.join`); anything
secret or large travels on standard input, never on a command line (``ps`` on the login node
shows command lines to every user).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
from typing import List, Optional, Sequence

from torchx_forge.core.errors import ConfigError, LoginError

#: a unix socket's path holds at most this many bytes (sun_path: 108 on Linux, 104 on macOS, with
#: the final NUL); ssh binds the master's socket under a temporary name 17 characters longer first
SOCKET_PATH_MAX = 103 - 17
#: a master socket's name: 8 characters of the destination's hash, ``-``, then ``%C`` (ssh's 40-character hash
#: of host, port and user): two Host aliases of one host each open, and authenticate, a master of their own
SOCKET_NAME_LENGTH = 8 + 1 + 40


def default_control_dir() -> str:
    """Where the master connections' sockets live: ~/.cache/torchx-forge/ssh, or a private directory
    under /tmp (one per home directory) when the home directory's path is too long for a socket."""
    home = os.path.join(os.path.expanduser("~"), ".cache", "torchx-forge", "ssh")
    if len(home) + 1 + SOCKET_NAME_LENGTH <= SOCKET_PATH_MAX:
        return home
    return os.path.join("/tmp", f"torchx-forge-ssh-{os.getuid()}-{hashlib.sha256(home.encode()).hexdigest()[:8]}")
#: how long a master connection outlives its last use
PERSIST = "10m"
#: a destination: a host alias, a host name or ``user@host`` (ports and jumps go in ~/.ssh/config)
DESTINATION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")

#: ssh's own messages (exit code 255) and what the user can do about each
_FAILURES = (
    (("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED", "No ED25519 host key is known",
      "host key for"),
     "its host key is unknown or has changed: connect once with `ssh {dest}`, check the key it shows, and try again"
     " (forge never turns host key checking off)"),
    (("Permission denied", "Too many authentication failures", "no matching"),
     "authentication failed: `ssh {dest} true` must work without a password prompt you cannot answer (load your key"
     " into ssh-agent, or set IdentityFile for this Host in ~/.ssh/config)"),
    (("Could not resolve hostname", "Name or service not known", "nodename nor servname"),
     "no such host: add a `Host {dest}` entry to ~/.ssh/config (HostName, User, ProxyJump) or use its full name"),
    (("Connection refused", "timed out", "No route to host", "Network is unreachable", "Connection reset"),
     "it does not answer: check the host and port (`ssh -v {dest} true`), your network or VPN, and try again"),
    (("closed by", "Connection closed", "Broken pipe", "mux_client", "Control socket connect", "kex_exchange"),
     "the connection closed before the command ended: run the command again (`torchx status` says what was done)"),
)


def check_destination(dest: str) -> str:
    """``dest`` if ``ssh`` can take it as a host; ConfigError naming runopt ``login`` otherwise."""
    if not DESTINATION.fullmatch(dest or ""):
        raise ConfigError("runopt 'login'", f"{dest!r} is not an SSH destination forge takes: give a Host alias of"
                          " ~/.ssh/config or user@host (letters, digits, '.', '_', '-', '@'; put ports and jumps in"
                          " ~/.ssh/config)")
    return dest


def failure(dest: str, stderr: str) -> LoginError:
    """The LoginError for what ssh printed when it exited 255 (the agent never exits 255 itself)."""
    text = stderr.strip()
    for needles, advice in _FAILURES:
        if any(n.lower() in text.lower() for n in needles):
            first = next((line for line in text.splitlines() if any(n.lower() in line.lower() for n in needles)), "")
            return LoginError(f"login {dest}: {advice.format(dest=dest)} (ssh: {first.strip().removeprefix('ssh: ')})")
    return LoginError(f"login {dest}: ssh failed ({(text.splitlines() or ['no message'])[0]}): check `ssh {dest} true`")


class Login:
    """Commands on one login node, over the user's OpenSSH and one multiplexed connection.

    Args:
        dest: the SSH destination (runopt ``login``).
        control_dir: where master sockets live (default :func:`default_control_dir`).
    """

    def __init__(self, dest: str, control_dir: Optional[str] = None) -> None:
        self.dest = check_destination(dest)
        self.control_dir = control_dir or default_control_dir()
        self.calls: List[List[str]] = []

    @property
    def control_path(self) -> str:
        """ssh's ControlPath for this destination: its own master, even beside another alias of the same
        host (sharing one would skip the other alias's host key and authentication settings)."""
        return f"{self.control_dir}/{hashlib.sha256(self.dest.encode()).hexdigest()[:8]}-%C"

    def ssh_argv(self, command: Sequence[str]) -> List[str]:
        """The local ``ssh`` command line that runs ``command`` (a list of words) on the login node."""
        return ["ssh", "-T", "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}",
                "-o", f"ControlPersist={PERSIST}", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                self.dest, "--", shlex.join(command)]

    def _prepare(self, command: Sequence[str]) -> List[str]:
        os.makedirs(self.control_dir, mode=0o700, exist_ok=True)
        st = os.stat(self.control_dir)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise LoginError(f"login {self.dest}: {self.control_dir} (where ssh keeps its connections) must be yours"
                             " and private (chmod 700)")
        self.calls.append(list(command))
        return self.ssh_argv(command)

    def run(self, command: Sequence[str], input: Optional[bytes] = None,
            timeout: Optional[float] = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` on the login node; its exit code and output as they are. LoginError when
        ssh itself failed (exit 255 with ssh's message); ``timeout``: LoginError after that many seconds."""
        argv = self._prepare(command)
        try:
            p = subprocess.run(argv, input=input if input is not None else b"", capture_output=True, timeout=timeout,
                               check=False)
        except FileNotFoundError:
            raise self._no_ssh() from None
        except subprocess.TimeoutExpired:
            raise LoginError(f"login {self.dest}: no answer in {timeout:.0f} s: check `ssh {self.dest} true`") from None
        if p.returncode == 255:
            raise failure(self.dest, p.stderr.decode(errors="replace"))
        return p

    def open(self, command: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start ``command`` on the login node and return the process, stdin and stdout as pipes
        (for answers read as they come: logs followed with ``-f``)."""
        argv = self._prepare(command)
        try:
            return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise self._no_ssh() from None

    def _no_ssh(self) -> LoginError:
        return LoginError(f"login {self.dest}: the OpenSSH client (`ssh`) is not on PATH: install it (Debian: openssh-client)")

    def close(self) -> None:
        """Close the master connection (the next call opens another)."""
        subprocess.run(["ssh", "-o", f"ControlPath={self.control_path}", "-O", "exit", self.dest],
                       capture_output=True, check=False)
