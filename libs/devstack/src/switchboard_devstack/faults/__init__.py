"""`make faults`: the system as separate processes under provider-like load while faults are injected,
with the invariants checked after each scenario (see runner.py and docs/reliability.md)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from switchboard_devstack.faults.runner import add_arguments as add

    add(parser)


def run_faults(args: argparse.Namespace) -> int:
    from switchboard_devstack.faults.runner import run_faults as run

    return run(args)
