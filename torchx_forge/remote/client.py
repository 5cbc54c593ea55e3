"""The laptop's side of a command sent to a login node: one request, one answer, over SSH.

Each verb runs ``<python> -m torchx_forge.agent`` on the login node (runopt ``python``: the
cluster's interpreter, which has torchx-forge) through the multiplexed connection of
:class:`~torchx_forge.remote.ssh.Login`. The request (the app, its options, secrets included)
travels as JSON on standard input, so the remote command line is the same few constant words
for every app: nothing the user wrote is parsed by the login's shell. The agent does there
what the verb does on a login node and ends; nothing stays running.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Mapping, Optional

from torchx_forge import __version__ as version
from torchx_forge.core.errors import ConfigError, ForgeError, LoginError, SlurmError, UnknownAppError
from torchx_forge.remote.ssh import Login, failure

#: the request/answer protocol both ends must speak (raised when either side changes it)
PROTOCOL = 1
AGENT = "torchx_forge.agent"
#: the errors the agent sends back by name, raised again here as they were there
_ERRORS = {"UnknownAppError": UnknownAppError, "LoginError": LoginError}


def _raise(dest: str, error: Mapping[str, Any]) -> None:
    """The error the agent on ``dest`` raised, raised here as the same kind."""
    kind, text = error.get("type", ""), str(error.get("message", ""))
    if kind == "ConfigError":
        raise ConfigError(f"on {dest}", text)
    if kind in _ERRORS:
        raise _ERRORS[kind](text)
    if kind == "SlurmError":
        raise SlurmError(["(on " + dest + ")"], 1, "", message=text)
    raise ForgeError(f"on {dest}: {text}")


class Agent:
    """Calls to the agent on one login node.

    Args:
        login: the login node.
        python: the cluster's interpreter (runopt ``python``; a name is looked up on the login's PATH).
        state_dir: the cluster-side state dir ("" : the cluster's configured one).
    """

    def __init__(self, login: Login, python: str = "python3", state_dir: str = "") -> None:
        self.login = login
        self.python = python or "python3"
        self.state_dir = state_dir
        self._hello: Optional[Dict[str, Any]] = None

    def _command(self) -> List[str]:
        return [self.python, "-m", AGENT]

    def _unusable(self, code: int, stderr: str) -> LoginError:
        text = stderr.strip()
        if code == 127 or "No such file" in text or "not found" in text:
            why = f"has no Python at {self.python!r} (runopt 'python' names the cluster's interpreter)"
        elif "No module named" in text:
            why = f"has no torchx-forge in {self.python} (install it there: pip install torchx-forge)"
        else:
            why = f"could not run torchx-forge with {self.python}: {(text.splitlines() or ['no message'])[-1]}"
        return LoginError(f"login {self.login.dest} {why}")

    def _request(self, op: str, payload: Mapping[str, Any]) -> bytes:
        return json.dumps({"protocol": PROTOCOL, "op": op, "state_dir": self.state_dir, **payload}).encode()

    def call(self, op: str, timeout: Optional[float] = None, **payload: Any) -> Any:
        """Run ``op`` on the login node; its answer, or the error it raised there, raised here."""
        p = self.login.run(self._command(), input=self._request(op, payload), timeout=timeout)
        lines = p.stdout.decode(errors="replace").strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise self._unusable(p.returncode, p.stderr.decode(errors="replace"))
        if "error" in answer:
            _raise(self.login.dest, answer["error"])
        return answer.get("result")

    def hello(self) -> Dict[str, Any]:
        """What the login's torchx-forge is (version, protocol, interpreter); LoginError, naming the
        host, the path and both versions, when this client cannot speak to it."""
        if self._hello is None:
            found = self.call("hello")
            if found.get("protocol") != PROTOCOL:
                raise LoginError(f"login {self.login.dest}: torchx-forge {found.get('version')} in {found.get('python')}"
                                 f" speaks protocol {found.get('protocol')}, this client ({version}) speaks {PROTOCOL}:"
                                 " install the same torchx-forge on both")
            self._hello = found
        return self._hello

    def stream(self, op: str, **payload: Any) -> Iterator[str]:
        """Lines ``op`` prints on the login node, as they come (a followed log); the same errors as
        :meth:`call` when it fails there, or ssh does, or the stream stops before its end."""
        proc = self.login.open(self._command())
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(self._request(op, payload))
        proc.stdin.close()
        ended = False
        try:
            for raw in proc.stdout:
                msg = json.loads(raw)
                if "line" in msg:
                    yield msg["line"]
                elif "error" in msg:
                    _raise(self.login.dest, msg["error"])
                ended = ended or "result" in msg
        except ValueError:
            ended = False
        finally:
            if proc.poll() is None:
                proc.terminate()
            code = proc.wait()
        if not ended:  # no answer's end: ssh failed, or the agent could not start or died
            stderr = proc.stderr.read().decode(errors="replace")
            raise failure(self.login.dest, stderr) if code == 255 else self._unusable(code, stderr)
