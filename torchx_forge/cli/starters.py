"""``torchx forge init | examples``: a ready-to-run starter project, and the shipped example files."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from torchx_forge.cli import STARTER_TYPES
from torchx_forge.errors import ForgeError

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cmd_init(args: argparse.Namespace) -> None:
    """Write a ready-to-run starter project: experiment.yaml, train and eval scripts, .torchxconfig."""
    if args.type not in STARTER_TYPES:
        raise ForgeError(f"unknown starter type {args.type!r}; choose one of: {', '.join(STARTER_TYPES)}")
    target = os.path.abspath(args.directory)
    folder = os.path.join(PACKAGE_DIR, "starters", args.type)
    # the starter's own files only: not the __pycache__ an installed or byte-compiled package has
    files = {os.path.join(folder, n): n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))
             and not n.endswith(".pyc")}
    common = os.path.join(PACKAGE_DIR, "starters", "common")
    files[os.path.join(common, "torchxconfig")] = ".torchxconfig"
    if args.type != "command":
        files[os.path.join(common, "eval.py")] = "eval.py"
    clashes = [n for n in files.values() if os.path.exists(os.path.join(target, n))]
    if clashes and not args.force:
        raise ForgeError(f"{target} already has {', '.join(sorted(clashes))}; pick an empty directory or pass --force")
    os.makedirs(target, exist_ok=True)
    for src, name in sorted(files.items(), key=lambda kv: kv[1]):
        shutil.copyfile(src, os.path.join(target, name))
        print(f"  wrote {os.path.join(args.directory, name)}")
    print(f"{args.type} starter in {args.directory}: {STARTER_TYPES[args.type]}\nnext: cd {args.directory} &&"
          " torchx forge validate --config experiment.yaml && torchx run forge.pipeline --config experiment.yaml")


def cmd_examples(args: argparse.Namespace) -> None:
    """List the shipped example files, or print one."""
    folder = os.path.join(PACKAGE_DIR, "examples")
    names = sorted(n for n in os.listdir(folder) if n.endswith((".yaml", ".py")))
    if not args.name:
        for n in names:
            with open(os.path.join(folder, n)) as f:
                first = next((line.strip("# \n\"") for line in f if line.strip() and not line.startswith("#!")), "")
            print(f"  {n:<18} {first}")
        print(f"print one with: torchx forge examples NAME   (they live in {folder})")
        return
    if args.name not in names:
        raise ForgeError(f"no example {args.name!r}; examples: {', '.join(names)}")
    with open(os.path.join(folder, args.name)) as f:
        sys.stdout.write(f.read())
