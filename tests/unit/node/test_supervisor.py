"""The launcher's supervisor: how it notices the program's end."""

import subprocess

from torchx_forge.node.supervisor import _exit_waiter


def test_the_exit_waiter_gives_the_status_once_the_program_ends_and_none_while_it_runs():
    child = subprocess.Popen(["sleep", "30"])
    wait = _exit_waiter(child)
    assert wait(0.05) is None
    child.terminate()
    assert wait(30) == -15
    assert _exit_waiter(subprocess.Popen(["sh", "-c", "exit 3"]))(30) == 3
