from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from switchboard_common.validation import StorableText

STORABLE = TypeAdapter(StorableText)


def test_ordinary_text_passes_unchanged() -> None:
    assert STORABLE.validate_python("héllo ☎ 你好") == "héllo ☎ 你好"


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800 lone surrogate"])
def test_what_postgresql_cannot_store_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        STORABLE.validate_python(bad)
