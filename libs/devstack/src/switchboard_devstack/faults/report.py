"""The fault suite's table: scenario x invariant, pass or fail, then the numbers behind every cell."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from switchboard_devstack.faults.invariants import INVARIANTS, Check


@dataclass
class ScenarioResult:
    name: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what was injected, and how the system took it
    error: str | None = None  # the scenario could not be run to its checks

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.checks) == len(INVARIANTS) and all(c.ok for c in self.checks)


def _cell(result: ScenarioResult, invariant: str) -> str:
    for check in result.checks:
        if check.invariant == invariant:
            return "ok" if check.ok else "FAIL"
    return "ERROR" if result.error is not None else "-"


def render(results: Sequence[ScenarioResult], total_seconds: float) -> str:
    name_width = max([len("scenario"), *(len(r.name) for r in results)])
    widths = [max(len(i), 5) for i in INVARIANTS]
    header = f"{'scenario':<{name_width}}  " + "  ".join(
        f"{i:<{w}}" for i, w in zip(INVARIANTS, widths, strict=True)
    )
    header += "  time"
    lines = [header, "-" * len(header)]
    for r in results:
        cells = "  ".join(f"{_cell(r, i):<{w}}" for i, w in zip(INVARIANTS, widths, strict=True))
        lines.append(f"{r.name:<{name_width}}  {cells}  {r.seconds:4.0f} s")
    failed = [r.name for r in results if not r.ok]
    lines.append("-" * len(header))
    verdict = "every invariant held" if not failed else f"FAILED: {', '.join(failed)}"
    lines.append(f"{len(results)} scenarios in {total_seconds / 60:.1f} min: {verdict}")
    lines += ["", "Numbers:"]
    for r in results:
        lines.append(f"  {r.name}")
        lines += [f"    · {note}" for note in r.notes]
        if r.error is not None:
            lines.append(f"    ERROR {r.error}")
        for check in r.checks:
            mark = "ok  " if check.ok else "FAIL"
            lines.append(f"    {mark} {check.invariant:<13} {check.detail}")
    return "\n".join(lines)
