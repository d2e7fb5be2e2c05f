"""The rules as routing applies them: the enabled rules (and the queues' escalation steps), read at most
every ``refresh_s`` (they change rarely, conversations open all the time), and the decision for each
newly opened conversation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard_common.events import ConversationOpened
from switchboard_router.routing import repository as routing_repository
from switchboard_router.routing.escalation import Step, steps_of
from switchboard_router.rules import language, repository
from switchboard_router.rules.evaluate import (
    Decision,
    Rule,
    RuleInputs,
    default_outcome,
    evaluate,
    needs_language,
)


class RuleBook:
    def __init__(self, refresh_s: float, languages: str, *, low_accuracy: bool = True) -> None:
        self._refresh_s = refresh_s
        self._languages = languages
        self._low_accuracy = low_accuracy
        self._rules: list[Rule] = []
        self._escalations: dict[str, list[Step]] = {}
        self._read_at: float | None = None
        self._detector_built = False

    async def rules(self, session: AsyncSession) -> list[Rule]:
        await self._refresh(session)
        return self._rules

    async def escalation(self, session: AsyncSession, queue: str) -> list[Step]:
        """The queue's escalation steps (none for most queues)."""
        await self._refresh(session)
        return self._escalations.get(queue, [])

    async def _refresh(self, session: AsyncSession) -> None:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self._refresh_s:
            self._rules = await repository.load_enabled(session)
            queues = await routing_repository.queue_escalations(session)
            self._escalations = {name: steps_of(steps) for name, steps in queues.items()}
            self._read_at = now

    async def decide(
        self, session: AsyncSession, opened: Sequence[ConversationOpened]
    ) -> dict[uuid.UUID, Decision]:
        """The matching rule's decision per conversation; empty when there are no rules (nothing to add
        to what the conversation asked for). A decision's language is the one its agent must speak: set
        only when the matching rule has a language condition."""
        rules = await self.rules(session)
        if not rules or not opened:
            return {}
        detect = needs_language(rules)
        if detect and not self._detector_built:
            # Building the detector takes 0.1 s (small models) to 1.5 s (full ones): once, off the event
            # loop, so the consumer's other work does not stall behind it.
            await asyncio.to_thread(language.warm_up, self._languages, low_accuracy=self._low_accuracy)
            self._detector_built = True
        by_language = {r.id for r in rules if r.conditions.languages}
        out: dict[uuid.UUID, Decision] = {}
        for e in opened:
            lang = (
                language.detect(e.text, self._languages, low_accuracy=self._low_accuracy) if detect else None
            )
            inputs = RuleInputs(e.channel.value, e.text, lang, e.customer_attributes, frozenset(e.tags))
            decision = evaluate(rules, inputs, default_outcome())
            if decision.rule_id not in by_language:
                # Only a rule that asks for the language makes agents need to speak it.
                decision = replace(decision, language=None)
            out[e.conversation_id] = decision
        return out
