"""The ops health view's summary of a readiness answer (``switchboard_metrics.ops.service``): what each
service's /health/ready said, turned into the status, checks and reasons ops people read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from switchboard_metrics.ops.schemas import ServiceStatus, SystemStatus
from switchboard_metrics.ops.service import overall, summarize, unreachable

URL = "http://conversation:8000"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _consumer(lag: int = 0, problems: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """One consumer's check, shaped as switchboard_common.http.health.consumer_check writes it."""
    problems = problems or []
    return {
        "ok": not problems,
        "running": True,
        "lag": lag,
        "problems": problems,
        "beyond_log_end": {},
        "stalled_s": {},
        "poll_running_s": None,
        "commit_failures": 0,
        "commit_failing_s": None,
        "since_commit_s": 0.4,
        **extra,
    }


def _readiness(**checks: Any) -> dict[str, Any]:
    """A /health/ready body: healthy unless a check passed in says otherwise."""
    all_checks: dict[str, Any] = {
        "database": {"ok": True},
        "broker": {"ok": True},
        "consumer:conversation": _consumer(lag=3),
        "outbox_relay": {"ok": True, "leader": True},
    }
    all_checks.update(checks)
    deciding = [c["ok"] for c in all_checks.values() if not c.get("advisory")]
    return {"status": "ok" if all(deciding) else "unavailable", "checks": all_checks}


def test_a_healthy_service_is_ok_with_its_checks_parsed() -> None:
    health = summarize("conversation", URL, 200, _readiness(), latency_ms=12.345)

    assert health.status is ServiceStatus.OK
    assert (health.http_status, health.latency_ms, health.error) == (200, 12.3, None)
    assert health.checks is not None
    assert health.checks.database is not None and health.checks.database.ok
    assert health.checks.broker is not None and health.checks.broker.ok
    [consumer] = health.checks.consumers
    assert (consumer.group, consumer.ok, consumer.lag, consumer.problems) == ("conversation", True, 3, [])
    assert health.checks.outbox_relay is not None
    assert health.checks.outbox_relay.ok and health.checks.outbox_relay.leader


def test_a_lagging_stalled_consumer_makes_the_service_unavailable_and_says_why() -> None:
    body = _readiness(
        **{
            "consumer:conversation": _consumer(
                lag=5000, problems=["no progress while records wait", "lag above 1000"]
            )
        }
    )

    health = summarize("conversation", URL, 503, body, latency_ms=3)

    assert health.status is ServiceStatus.UNAVAILABLE
    assert health.checks is not None
    [consumer] = health.checks.consumers
    assert not consumer.ok and consumer.lag == 5000
    assert consumer.problems == ["no progress while records wait", "lag above 1000"]
    assert health.error == "consumer conversation: no progress while records wait, lag above 1000"


def test_an_advisory_consumer_with_problems_is_reported_but_leaves_the_service_ok() -> None:
    body = _readiness(
        **{"consumer:ingest-dispatcher": _consumer(lag=7, problems=["offset commits failing"], advisory=True)}
    )

    health = summarize("ingest", URL, 200, body, latency_ms=3)

    assert health.status is ServiceStatus.OK and health.error is None
    assert health.checks is not None
    dispatcher = next(c for c in health.checks.consumers if c.group == "ingest-dispatcher")
    assert dispatcher.advisory and not dispatcher.ok and dispatcher.problems == ["offset commits failing"]


def test_a_database_down_is_unavailable_with_the_database_error() -> None:
    error = "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 5432)"
    body = _readiness(database={"ok": False, "error": error})

    health = summarize("router", URL, 503, body, latency_ms=2000)

    assert health.status is ServiceStatus.UNAVAILABLE
    assert health.checks is not None and health.checks.database is not None
    assert not health.checks.database.ok and health.checks.database.error == error
    assert health.checks.broker is not None and health.checks.broker.ok
    assert health.error == f"database: {error}"


def test_an_unreachable_service_carries_its_error_and_no_checks() -> None:
    health = unreachable("ingest", URL, "ConnectError: [Errno 111] Connection refused", latency_ms=1.04)

    assert health.status is ServiceStatus.UNREACHABLE
    assert (health.http_status, health.checks, health.latency_ms) == (None, None, 1.0)
    assert health.error == "ConnectError: [Errno 111] Connection refused"


def test_an_answer_that_is_not_a_readiness_is_unavailable_not_an_error() -> None:
    # A wrong URL: something answers, but not a Switchboard service (an HTML 404, a JSON error).
    for status, body in ((404, None), (404, {"detail": "Not Found"}), (200, ["ok"]), (200, {"checks": "x"})):
        health = summarize("metrics", URL, status, body, latency_ms=1)
        assert health.status is ServiceStatus.UNAVAILABLE and health.checks is None
        assert health.error == f"HTTP {status}: not a readiness answer"


def test_malformed_checks_are_read_as_not_ok_rather_than_failing() -> None:
    body = {
        "status": "unavailable",
        "checks": {
            "database": {"ok": "yes"},
            "broker": "up",
            "consumer:x": {"lag": "many", "problems": "all"},
        },
    }

    health = summarize("router", URL, 503, body, latency_ms=1)

    assert health.status is ServiceStatus.UNAVAILABLE and health.checks is not None
    assert health.checks.database is not None and not health.checks.database.ok
    assert health.checks.broker is None
    [consumer] = health.checks.consumers
    assert (consumer.ok, consumer.lag, consumer.problems) == (False, None, [])


def test_a_ready_status_code_with_a_body_saying_unavailable_is_unavailable() -> None:
    body = _readiness()
    body["status"] = "unavailable"

    assert summarize("router", URL, 200, body, latency_ms=1).status is ServiceStatus.UNAVAILABLE


def test_the_system_is_ok_only_when_every_service_is() -> None:
    ok = [summarize(name, URL, 200, _readiness(), latency_ms=1) for name in ("router", "ingest")]
    down = unreachable("conversation", URL, "ConnectError")

    healthy = overall(ok, NOW)
    degraded = overall([*ok, down], NOW)

    assert healthy.status is SystemStatus.OK and healthy.checked_at == NOW
    assert [s.name for s in healthy.services] == ["ingest", "router"]  # sorted by name
    assert degraded.status is SystemStatus.DEGRADED
    assert [s.status for s in degraded.services] == [
        ServiceStatus.UNREACHABLE,
        ServiceStatus.OK,
        ServiceStatus.OK,
    ]
