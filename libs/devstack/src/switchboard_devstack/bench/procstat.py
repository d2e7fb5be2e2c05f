"""CPU and memory of processes, read from /proc (Linux only).

A process tree's CPU is the sum, over every live process in it, of its own ``utime + stime`` plus
``cutime + cstime`` (the CPU of its children that exited and were reaped). A PostgreSQL backend that exits
during the window is reaped by the postmaster, so its CPU moves into the postmaster's ``cutime``/``cstime``
and stays counted; only a process that exits before its parent reaps it (a zombie's parent outside the
tree) could be lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    starttime: int

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def ticks(self) -> int:
        """Own CPU plus that of reaped children, in clock ticks."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one /proc/<pid>/stat line. ``comm`` may hold spaces and parentheses: it ends at the last ')'."""
    pid = int(text[: text.index("(")].strip())
    close = text.rindex(")")
    comm = text[text.index("(") + 1 : close]
    fields = text[close + 2 :].split()
    # fields[0] is field 3 (state) of proc(5); field n is fields[n - 3].
    return ProcStat(
        pid=pid,
        comm=comm,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
        starttime=int(fields[19]),
    )


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def all_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            stats[stat.pid] = stat
    return stats


def tree(root: int, stats: dict[int, ProcStat]) -> list[ProcStat]:
    """``root`` and all its live descendants (empty if ``root`` is gone)."""
    if root not in stats:
        return []
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(stats[pid])
        pending.extend(children.get(pid, ()))
    return found


@dataclass(frozen=True, slots=True)
class TreeSample:
    """One snapshot of a process tree: total ticks and the identities of its processes."""

    ticks: int
    members: frozenset[tuple[int, int]]  # (pid, starttime): a reused pid is another process

    @classmethod
    def of(cls, root: int, stats: dict[int, ProcStat]) -> TreeSample:
        procs = tree(root, stats)
        return cls(sum(p.ticks for p in procs), frozenset((p.pid, p.starttime) for p in procs))


@dataclass(frozen=True, slots=True)
class TreeDelta:
    cpu_seconds: float
    processes: int  # at the end
    started: int
    exited: int


def delta(before: TreeSample, after: TreeSample) -> TreeDelta:
    return TreeDelta(
        cpu_seconds=max(0, after.ticks - before.ticks) / CLK_TCK,
        processes=len(after.members),
        started=len(after.members - before.members),
        exited=len(before.members - after.members),
    )


def total(deltas: Iterable[TreeDelta]) -> TreeDelta:
    """Several trees' deltas added up (the replicas of one service)."""
    parts = list(deltas)
    return TreeDelta(
        cpu_seconds=sum(d.cpu_seconds for d in parts),
        processes=sum(d.processes for d in parts),
        started=sum(d.started for d in parts),
        exited=sum(d.exited for d in parts),
    )


def snapshot(roots: dict[str, int]) -> dict[str, TreeSample]:
    """Sample every named process tree at (nearly) the same instant."""
    stats = all_stats()
    return {name: TreeSample.of(pid, stats) for name, pid in roots.items()}


def parse_status_kib(text: str, key: str) -> int | None:
    """A ``kB`` value of /proc/<pid>/status or smaps_rollup, e.g. ``VmRSS``."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def memory_kib(pid: int, key: str) -> int | None:
    try:
        return parse_status_kib((PROC / str(pid) / "status").read_text(), key)
    except (OSError, ValueError):
        return None


def tree_pss_kib(root: int) -> tuple[int | None, int]:
    """Proportional set size summed over a tree (shared memory split between its users), and its size."""
    procs = tree(root, all_stats())
    total = 0
    for proc in procs:
        try:
            value = parse_status_kib((PROC / str(proc.pid) / "smaps_rollup").read_text(), "Pss")
        except OSError:
            return None, len(procs)
        total += value or 0
    return total, len(procs)
