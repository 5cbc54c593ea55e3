"""How batch scripts start the launcher fast: ``python -S .../torchx_forge/node/boot.py ARGS``.

A Python started with ``-S`` skips ``site``: it does not read site-packages' ``.pth`` files, which
on a typical environment import an editable install's finder, certifi and the like before the
first line of the launcher runs (25-50 ms of every task on the lab's nodes). The launcher needs
nothing of site-packages when the state dir is a local path (standard library only), so this file
puts the directory that holds ``torchx_forge`` first on ``sys.path`` and runs
:func:`torchx_forge.node.launch.main`. The batch script uses it only where the launcher imports
the same torchx_forge (runopt python is the submitting interpreter, the state dir a path, no
container around the launcher), and falls back to ``python -m torchx_forge.node.launch`` on a
node where this file is not found (:func:`torchx_forge.slurm.srun.launch_lines`).

Importing this module does nothing.
"""

import os
import sys


def start() -> None:
    """Run the launcher with this file's torchx_forge first on ``sys.path`` (in place of the
    script's own directory, which Python put there)."""
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from torchx_forge.node.launch import main  # noqa: PLC0415 (once sys.path holds it)

    main()


if __name__ == "__main__":
    start()
