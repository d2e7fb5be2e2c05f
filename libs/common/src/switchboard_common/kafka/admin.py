"""Topic provisioning: every logical topic and its DLQ, idempotently."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from switchboard_common import topics
from switchboard_common.settings import CommonSettings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(settings: CommonSettings) -> list[str]:
    """Create the project's topics that do not exist yet; returns the names created."""
    wanted = [settings.topic(t) for t in topics.ALL] + [settings.topic(topics.dlq(t)) for t in topics.ALL]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="switchboard-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    # DLQs see little traffic and need no parallelism.
                    num_partitions=1 if name.endswith(topics.DLQ_SUFFIX) else settings.topic_partitions,
                    replication_factor=settings.topic_replication_factor,
                )
                for name in missing
            ]
        )
        for name, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"creating topic {name} failed: {code} {message}")
        log.info("topics created", extra={"topics": missing})
        return missing
    finally:
        await admin.close()
