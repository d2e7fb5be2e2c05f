"""The sweeper's memory, pure: which agents with room a pass serves."""

from __future__ import annotations

import uuid
from dataclasses import replace

from switchboard_router.routing.policy import Candidate
from switchboard_router.routing.service import SweepMemory


def _agent(**fields: object) -> Candidate:
    base = Candidate(uuid.uuid4(), {"billing": 2}, 3, 0, None, (3, 3, 3, 0), (0, 0, 0, 0), frozenset({"en"}))
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_pass_serves_agents_changed_or_new_since_the_last_and_every_agent_on_full_passes() -> None:
    memory = SweepMemory(full_every=4)
    a, b = _agent(), _agent()
    assert memory.changed([a, b]) == [a, b]  # the first pass is full
    assert memory.changed([a, b]) == []  # nothing changed
    busier = replace(a, active=1, loads=(1, 0, 0, 0))
    newcomer = _agent()
    assert memory.changed([busier, b, newcomer]) == [busier, newcomer]
    assert memory.changed([busier, b, newcomer]) == []
    assert memory.changed([busier, b, newcomer]) == [busier, b, newcomer]  # the fifth pass is full again


def test_skills_languages_and_capacity_count_as_changes_and_an_agent_with_room_again_is_new() -> None:
    memory = SweepMemory(full_every=100)
    a = _agent()
    memory.changed([a])
    assert memory.changed([replace(a, proficiency={"billing": 4})]) == [
        replace(a, proficiency={"billing": 4})
    ]
    assert memory.changed([replace(a, languages=frozenset({"es"}))]) == [
        replace(a, languages=frozenset({"es"}))
    ]
    assert memory.changed([replace(a, capacity=5)]) == [replace(a, capacity=5)]
    assert memory.changed([]) == []  # full, or offline: forgotten
    assert memory.changed([a]) == [a]  # back with room: served as new
