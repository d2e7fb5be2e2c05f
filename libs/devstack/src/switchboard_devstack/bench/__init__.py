"""`make bench`: the message path measured per process (see runner.py).

Imports stay lazy: the load generator (``python -m switchboard_devstack.bench.loadgen``) runs in its own
process and must not pay for importing the rest.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from switchboard_devstack.bench.runner import add_arguments as add

    add(parser)


def run_bench(args: argparse.Namespace) -> int:
    from switchboard_devstack.bench.runner import run_bench as run

    return run(args)
