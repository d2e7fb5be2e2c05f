"""Escalation while waiting (bullseye rings), pure: what a waiting conversation requires after each step.

A queue may have steps, each taken once the conversation has waited ``after_s`` seconds (steps in
increasing ``after_s``). Ring 0, before any step, asks the most of an agent: the rule's required skills at
their levels and, when the queue has steps, its optional skills too (at level 1). Each step widens the ring:
``drop_optional`` stops asking for the optional skills, ``relax_levels_by`` lowers every required minimum by
that much (never below 1). Steps accumulate. A queue without steps never asks for optional skills.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Step:
    after_s: int
    drop_optional: bool = False
    relax_levels_by: int = 0


def requirement_at(
    base: Mapping[str, int], optional: Iterable[str], steps: Sequence[Step], reached: int
) -> dict[str, int]:
    """Skill → minimum level once ``reached`` steps (0 = none) of ``steps`` are taken."""
    skills = dict(base)
    keep_optional = bool(steps)
    for step in steps[:reached]:
        keep_optional = keep_optional and not step.drop_optional
        if step.relax_levels_by:
            skills = {s: max(1, level - step.relax_levels_by) for s, level in skills.items()}
    if keep_optional:
        for skill in optional:
            skills.setdefault(skill, 1)
    return skills


def steps_reached(steps: Sequence[Step], enqueued_at: datetime, now: datetime) -> int:
    """How many steps a conversation waiting since ``enqueued_at`` has reached by ``now``."""
    waited = now - enqueued_at
    return sum(1 for step in steps if waited >= timedelta(seconds=step.after_s))


def steps_of(data: Sequence[Mapping[str, object]]) -> list[Step]:
    """Steps as stored (the queue's JSON), in order."""
    steps = [
        Step(
            int(str(d["after_s"])), bool(d.get("drop_optional", False)), int(str(d.get("relax_levels_by", 0)))
        )
        for d in data
    ]
    return sorted(steps, key=lambda step: step.after_s)
