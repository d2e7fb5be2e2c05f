"""The garbage collector's settings for a long-running service.

CPython's cyclic collector runs a young-generation pass every 700 net allocations, and every tenth of
those also scans the middle generation. A consumer decoding hundreds of events per poll allocates tens of
thousands of short-lived objects (pydantic models, dicts, datetimes), none in reference cycles, so at the
default threshold the collector ran hundreds of times a second and took ~19 % of the metrics consumer's
CPU at saturation (py-spy --native: ``gc_collect_main``). Reference counting frees those objects anyway;
the collector is only needed for cycles, which are rare here.

So, once a service has started: everything allocated during start-up (modules, the app, SQLAlchemy and
pydantic metadata, ~10^5 objects that live as long as the process) is moved out of the collector's sight
(``gc.freeze``), and the young generation's threshold is raised, so passes are rarer and each scans only
objects made since start-up. Cycles are still collected, later.
"""

from __future__ import annotations

import gc


def tune_gc(young_threshold: int) -> None:
    """Freeze what start-up allocated and raise the young generation's threshold to this."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
