"""Slurm host lists and array task specs, expanded without calling scontrol.

Standard library only: the task launcher imports this on every compute node.
"""

from __future__ import annotations

import re
from typing import List


def expand_ranges(spec: str) -> List[int]:
    """Expand an array task spec such as ``2-5%2`` or ``1,3,7-9`` into task ids."""
    spec = spec.split("%", 1)[0]
    out: List[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            step = 1
            if ":" in hi:
                hi, step_s = hi.split(":", 1)
                step = int(step_s)
            out.extend(range(int(lo), int(hi) + 1, step))
        else:
            out.append(int(part))
    return out


_HOST_RE = re.compile(r"([^,\[]+)(?:\[([^\]]+)\])?([^,\[]*)")


def expand_hostlist(hostlist: str) -> List[str]:
    """Expand a Slurm host list (``n[1-3,5],gpu-[01-02]``) like ``scontrol show hostnames``."""
    hosts: List[str] = []
    pos = 0
    text = hostlist.strip()
    while pos < len(text):
        if text[pos] == ",":
            pos += 1
            continue
        m = _HOST_RE.match(text, pos)
        if not m or m.end() == pos:
            break
        prefix, ranges, suffix = m.group(1), m.group(2), m.group(3)
        if ranges is None:
            hosts.append(prefix + suffix)
        else:
            for part in ranges.split(","):
                lo, _, hi = part.partition("-")
                width = len(lo)
                for i in range(int(lo), int(hi or lo) + 1):
                    hosts.append(f"{prefix}{i:0{width}d}{suffix}")
        pos = m.end()
    return hosts
