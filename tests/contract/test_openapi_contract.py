"""Every service against its own OpenAPI document, fuzzed by schemathesis in this process: whatever a
client sends, with or without a credential, the answer is never a 5xx, its status is one the document
declares for the operation and its body conforms to the declared schema."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import jsonschema_rs
import phonenumbers
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.python import asgi
from starlette.types import Message, Receive, Scope, Send

from switchboard_common.kafka.admin import ensure_topics
from switchboard_conversation.app import create_app as conversation_app
from switchboard_devstack.stack import Infrastructure
from switchboard_ingest.app import create_app as ingest_app
from switchboard_metrics.app import create_app as metrics_app
from switchboard_router.app import create_app as router_app
from tests.conftest import (
    ADMIN_KEY,
    AUTH_SECRET,
    INGEST_KEY,
    WEBCHAT_SECRET,
    Settings,
    make_settings,
    seed_skills,
    truncate_all,
)
from tests.support import bearer

FACTORIES: dict[str, Callable[[Settings], FastAPI]] = {
    "ingest": ingest_app,
    "conversation": conversation_app,
    "router": router_app,
    "metrics": metrics_app,
}
# The documents are what the code declares, whatever the settings; they are read at collection, when the
# database and the broker are not up yet, from apps that are never started. The apps under test are
# built from the same code with the real settings.
_PLACEHOLDER = Settings(
    environment="test",
    ingest_api_keys=[INGEST_KEY],
    admin_api_key=ADMIN_KEY,
    auth_secret=AUTH_SECRET,
    webchat_token_secret=WEBCHAT_SECRET,
)
DOCUMENTS = {name: factory(_PLACEHOLDER).openapi() for name, factory in FACTORIES.items()}


@pytest.fixture(scope="module")
def contract_settings(infra: Infrastructure) -> Settings:
    """The ``settings`` fixture's recipe, once for the module: the apps are started once, not per test."""
    test_settings = make_settings(infra, prefix=f"c{uuid.uuid4().hex[:10]}.")

    async def prepare() -> None:
        await truncate_all(test_settings.database_url)
        await seed_skills(test_settings.database_url)
        await ensure_topics(test_settings)

    asyncio.run(prepare())
    return test_settings


class LastingLifespan:
    """An app whose lifespan lasts until ``stop()``, though schemathesis ends the lifespans it started
    after every test: starting consumers and pools for each operation would cost seconds, and their
    readiness, each time.

    The real lifespan runs as a task of its own on schemathesis's event loop (where requests to the app
    run too), begun by the first startup; later startups and every shutdown but the last are acknowledged
    without reaching it.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._stopping = False
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._task is None:
                    self._task = asyncio.create_task(self.app(dict(scope), self._inbox.get, self._outbox.put))
                    await self._inbox.put(message)
                    reply = await self._outbox.get()
                    if reply["type"] != "lifespan.startup.complete":
                        await send(reply)
                        return
                await send({"type": "lifespan.startup.complete"})
            else:
                if self._stopping and self._task is not None:
                    await self._inbox.put(message)
                    await self._outbox.get()
                    await self._task
                await send({"type": "lifespan.shutdown.complete"})
                return

    def client(self) -> asgi.ASGIClient:
        """A client of schemathesis's, whose requests (and this app's lifespan) run on its event loop."""
        return asgi.get_client(cast(Any, self))  # its ASGI type wants dicts where starlette's has mappings

    def stop(self) -> None:
        """End the real lifespan: through one more startup and shutdown, on the loop it runs on."""
        self._stopping = True
        with self.client():
            pass
        asgi.shutdown_lifespans()


def _wait_ready(client: asgi.ASGIClient, timeout: float = 60.0) -> None:
    # The consumers join their groups in the background; until then /health/ready rightly answers 503.
    deadline = time.monotonic() + timeout
    while (response := client.get("/health/ready")).status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready: {response.text}")
        time.sleep(0.1)


@dataclass(frozen=True)
class Running:
    apps: dict[str, LastingLifespan]  # by document title
    agent_token: str


@pytest.fixture(scope="module")
def running(contract_settings: Settings) -> Iterator[Running]:
    """The four services, started and ready, for the whole module."""
    apps = {name: LastingLifespan(factory(contract_settings)) for name, factory in FACTORIES.items()}
    try:
        for app in apps.values():
            with app.client() as client:
                _wait_ready(client)
        with apps["router"].client() as router:
            agent = router.post(
                "/v1/agents",
                json={"name": "Ada", "email": "ada@example.com", "skills": ["billing"]},
                headers=bearer(ADMIN_KEY),
            )
            assert agent.status_code == 201, agent.text
        yield Running({app.app.title: app for app in apps.values()}, agent.json()["token"]["access_token"])
    finally:
        for app in reversed(apps.values()):
            app.stop()


# Ingest documents its phone field with the custom format "phone": the numbers phonenumbers deems possible,
# which no pattern can describe. Valid examples for it come from phonenumbers' own example numbers, written
# in the international forms the field accepts.
_PHONES = [
    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    for region in ("US", "GB", "FR", "DE", "IN", "BR", "JP", "AU", "ZA", "MX")
    if (number := phonenumbers.example_number(region)) is not None
]
schemathesis.openapi.format(
    "phone", st.sampled_from(_PHONES) | st.sampled_from(_PHONES).map(lambda p: "00" + p[1:].replace(" ", ""))
)
# Routing rules document `pattern` with the custom format "re2": the expressions RE2 accepts.
schemathesis.openapi.format("re2", st.sampled_from([r"(?i)order\s*#?\d{4,}", "refund", r"^\w+$", r"(a+)+$"]))


STREAM_READ_S = 1.0
STREAM_CASES = 3
_STREAM_CASES: dict[tuple[str, str, str], int] = {}

# The key each service trusts, an agent's token (ingest refuses it; router and conversation limit what
# it sees; metrics forbids it), and nothing.
CREDENTIALS = ("service", "agent", "anonymous")


@schemathesis.pytest.parametrize(
    **{name: schemathesis.openapi.from_dict(document) for name, document in DOCUMENTS.items()}
)
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@pytest.mark.parametrize("credential", CREDENTIALS)
# The services' Kafka clients use the `random` module on their own thread while hypothesis draws a case,
# which hypothesis takes for a strategy using it.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_answers_as_documented(case: schemathesis.Case[Any], credential: str, running: Running) -> None:
    title = case.operation.schema.raw_schema["info"]["title"]
    key = {
        "service": INGEST_KEY if title == "Switchboard ingest" else ADMIN_KEY,
        "agent": running.agent_token,
        "anonymous": None,
    }[credential]
    # An operation whose input has constraints OpenAPI cannot state ("end after start", "a template that
    # compiles") declares them with x-constraints; a schema-valid request may then be rejected, with a documented 422,
    # and every other check still applies.
    relaxed = "x-constraints" in case.operation.definition.raw
    # An event stream does not end by itself: what it sends within a moment is enough to check it. Each
    # call holds the connection for seconds, so a stream is checked on its first few cases per credential
    # (the full hypothesis budget pushed the module past the per-test timeout on a busy CI machine); the
    # streams' behaviour is tested in test_agent_stream.py and test_kpis.py.
    streaming = "text/event-stream" in str(case.operation.definition.raw.get("responses", {}))
    if streaming:
        seen = _STREAM_CASES.setdefault((title, case.operation.label, credential), 0)
        if seen >= STREAM_CASES:
            return
        _STREAM_CASES[(title, case.operation.label, credential)] = seen + 1
    case.call_and_validate(
        headers=bearer(key) if key else None,
        app=running.apps[title],
        excluded_checks=[schemathesis.checks.positive_data_acceptance] if relaxed else None,
        timeout=STREAM_READ_S if streaming else None,
    )


@pytest.mark.parametrize("service", list(DOCUMENTS))
def test_every_error_is_documented_with_the_error_body(service: str) -> None:
    document = DOCUMENTS[service]
    # FastAPI's own validation error body is never sent: it must not be promised either.
    assert "HTTPValidationError" not in str(document)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
            validated = operation.get("requestBody") or any(
                p["in"] == "query" for p in operation.get("parameters", [])
            )
            if not path.startswith("/v1/"):
                continue  # /health/ready answers 503 with its own report, not an error
            # Every API operation checks a credential and may find the database unavailable.
            assert {"401", "503"} <= set(errors), (method, path)
            if validated:
                assert "422" in errors, (method, path)
            if not operation.get("parameters") and not operation.get("requestBody"):
                assert "422" not in errors, (method, path)
            for status, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


def _examples_of(document: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The schema a body has (a list's items for a list) and the examples given for it."""
    if schema.get("type") == "array":
        schema = schema["items"]
    target = schema
    if "$ref" in schema:
        target = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema, list(target.get("examples", []))


def test_the_agent_api_shows_an_example_of_every_body() -> None:
    # The desktop client's contract: every JSON body an agent sends or receives has an example, and each
    # example is valid for the schema it illustrates.
    document = DOCUMENTS["conversation"]
    missing = []
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            bodies = [("request", operation.get("requestBody", {}).get("content", {}))]
            bodies += [
                (status, response.get("content", {}))
                for status, response in operation["responses"].items()
                if status.startswith("2")
            ]
            for which, content in bodies:
                if "application/json" not in content:
                    continue
                schema, examples = _examples_of(document, content["application/json"]["schema"])
                if not examples:
                    missing.append(f"{method.upper()} {path} {which}")
                validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
                for example in examples:
                    errors = [e.message for e in validator.iter_errors(example)]
                    assert not errors, (method, path, which, errors)
    assert not missing, missing


@pytest.mark.parametrize("service", list(DOCUMENTS))
def test_every_stream_documents_its_media_type(service: str) -> None:
    # The contract test reads an event stream only as long as its documented media type says it streams;
    # an undocumented one is read until the per-test timeout.
    for path, operations in DOCUMENTS[service]["paths"].items():
        if path.endswith("/stream"):
            content = operations["get"]["responses"]["200"].get("content", {})
            assert list(content) == ["text/event-stream"], path


_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.mark.parametrize("service", list(DOCUMENTS))
async def test_method_not_allowed_names_the_documented_methods(service: str) -> None:
    app = FACTORIES[service](_PLACEHOLDER)  # routing answers a 405 before any database or broker work
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for template, operations in DOCUMENTS[service]["paths"].items():
            path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
            declared = {m.upper() for m in operations}
            for method in sorted(_METHODS - set(operations)):
                response = await client.request(method.upper(), path, headers=bearer(ADMIN_KEY))
                assert response.status_code == 405, (method, template, response.text)
                assert set(response.headers["allow"].split(", ")) == declared, (method, template)
                assert response.json()["error"]["code"] == "method_not_allowed"
