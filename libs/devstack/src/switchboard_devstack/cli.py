"""`switchboard-dev run`: the whole system on its embedded defaults (what `make run` calls)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from switchboard_common.settings import DEV_ADMIN_API_KEY, DEV_INGEST_API_KEY, CommonSettings
from switchboard_devstack.stack import SERVICES, Infrastructure, ServiceProcesses, prepare, service_env


def _banner(infra: Infrastructure, services: ServiceProcesses, log_dir: Path, dev_secrets: bool) -> str:
    lines = ["", "Switchboard is running.", ""]
    for spec in SERVICES:
        url = services.url(spec.name)
        lines.append(f"  {spec.name:<13} {url}   docs: {url}/docs")
    lines += [
        "",
        f"  database      {infra.database_url}" + ("  (embedded)" if "postgresql" in infra.embedded else ""),
        f"  broker        {infra.kafka_bootstrap}" + ("  (embedded)" if "broker" in infra.embedded else ""),
        f"  logs          {log_dir}/",
    ]
    if dev_secrets:
        lines += [
            "",
            f"  ingest API key: {DEV_INGEST_API_KEY}    admin key: {DEV_ADMIN_API_KEY}   (development only)",
        ]
    lines += ["", "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def run(workdir: Path) -> int:
    infra = Infrastructure(
        workdir,
        database=os.environ.get("SWITCHBOARD_DEV_DATABASE", "switchboard"),
        pg_port=int(os.environ.get("SWITCHBOARD_DEV_PG_PORT", "5433")),
        broker_port=int(os.environ.get("SWITCHBOARD_DEV_BROKER_PORT", "9092")),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"Starting infrastructure ({', '.join(infra.embedded) or 'external'}) ...", flush=True)
    infra.start()
    services: ServiceProcesses | None = None
    try:
        env = infra.env()
        os.environ.update(env)
        settings = CommonSettings()
        print("Applying migrations and creating topics ...", flush=True)
        prepare(settings)
        log_dir = workdir / "logs"
        services = ServiceProcesses(service_env(env), log_dir)
        print("Starting services ...", flush=True)
        services.start()
        print(_banner(infra, services, log_dir, settings.environment == "development"), flush=True)
        while not stop.wait(1):
            if dead := services.exited():
                print(f"service(s) exited: {dead}; see {log_dir}. Stopping.", file=sys.stderr)
                return 1
        return 0
    finally:
        print("Stopping ...", flush=True)
        if services is not None:
            services.stop()
        infra.stop()
        print("Stopped.", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="switchboard-dev")
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd = sub.add_parser("run", help="start the whole system")
    run_cmd.add_argument("--workdir", type=Path, default=Path(".devstack"))
    bench = sub.add_parser(
        "bench", help="measure throughput, latency and per-process cost of the message path"
    )
    from switchboard_devstack.bench import add_arguments, run_bench

    add_arguments(bench)
    bench_routing = sub.add_parser(
        "bench-routing",
        help="time one routing decision against 5,000 online agents and 10,000 waiting (make bench-routing)",
    )
    from switchboard_devstack.bench import routing

    routing.add_arguments(bench_routing)
    faults = sub.add_parser(
        "faults", help="inject faults under load and check that nothing acknowledged is lost (make faults)"
    )
    from switchboard_devstack.faults import add_arguments as add_fault_arguments
    from switchboard_devstack.faults import run_faults

    add_fault_arguments(faults)
    args = parser.parse_args(argv)
    if args.command == "run":
        sys.exit(run(args.workdir.resolve()))
    if args.command == "faults":
        sys.exit(run_faults(args))
    if args.command == "bench-routing":
        sys.exit(routing.run(args))
    sys.exit(run_bench(args))
