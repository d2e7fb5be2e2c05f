"""The command line every service exposes: ``serve`` and ``migrate``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence

import uvicorn

from switchboard_common.db.migrations import upgrade
from switchboard_common.kafka.admin import ensure_topics
from switchboard_common.logging import configure_logging
from switchboard_common.settings import CommonSettings


def service_main(
    name: str,
    package: str,
    schema: str,
    app_factory: str,
    default_port: int,
    settings_class: type[CommonSettings],
) -> Callable[[Sequence[str] | None], None]:
    def main(argv: Sequence[str] | None = None) -> None:
        parser = argparse.ArgumentParser(prog=f"switchboard-{name}")
        sub = parser.add_subparsers(dest="command", required=True)
        serve = sub.add_parser("serve", help="run the HTTP API and the consumers")
        serve.add_argument("--host", default="127.0.0.1")
        serve.add_argument("--port", type=int, default=default_port)
        sub.add_parser("migrate", help=f"apply the {schema} schema's migrations")
        sub.add_parser("create-topics", help="create the project's topics and DLQs if missing")
        args = parser.parse_args(argv)
        settings = settings_class()
        configure_logging(name, settings.log_level)
        if args.command == "migrate":
            upgrade(package, schema, settings.database_url)
        elif args.command == "create-topics":
            asyncio.run(ensure_topics(settings))
        else:
            uvicorn.run(
                app_factory,
                factory=True,
                host=args.host,
                port=args.port,
                log_config=None,  # keep the JSON logging configured above
                # One JSON line per request costs ~5 % of a hot service's CPU; Prometheus has per-route
                # counts and latencies. Turn it on for debugging.
                access_log=settings.http_access_log,
                # X-Forwarded-* are not trusted unless configured: nothing here reads client addresses,
                # and provider signatures are checked against the configured public URL.
                proxy_headers=bool(settings.forwarded_allow_ips),
                forwarded_allow_ips=settings.forwarded_allow_ips or None,
                server_header=False,
                timeout_graceful_shutdown=20,
            )

    return main
