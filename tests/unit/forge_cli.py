"""`torchx forge ...` run in process, as the torchx CLI runs it (its exit code: 0 or SystemExit's)."""

from __future__ import annotations

import argparse

from torchx_forge.cli import CmdForge


def run_forge(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cmd = CmdForge()
    cmd.add_arguments(parser)
    try:
        cmd.run(parser.parse_args(list(argv)))
    except SystemExit as e:
        return int(e.code or 0)
    return 0
