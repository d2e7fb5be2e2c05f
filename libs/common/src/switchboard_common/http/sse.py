"""What Server-Sent Events streams share: where a reconnecting client resumes."""

from __future__ import annotations

import re

from switchboard_common.http.errors import ApiError

# Event ids are BIGINT positions.
MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def resume_after(header: str | None, query: int | None) -> int | None:
    """The event id a stream resumes after. The ``Last-Event-ID`` header, which an EventSource sends on
    its reconnects, wins over the query parameter the page first connected with: it is the newer of the
    two. A header that is not an event id is a 400."""
    if header is None or not header.strip():
        return query
    value = header.strip()
    # ASCII digits only (str.isdigit takes "²"), and within the event ids' BIGINT.
    if not _EVENT_ID.fullmatch(value) or int(value) > MAX_EVENT_ID:
        raise ApiError(400, "Last-Event-ID must be an event id this stream sent")
    return int(value)
