"""Text templates (canned responses, auto-replies), rendered by jinja2's sandbox.

* ``SandboxedEnvironment``: a template can read the variables it is given and nothing else; reaching for
  internals (``''.__class__``, ``__globals__``) raises ``SecurityError``.
* Autoescape off: the output is plain text for a chat, an SMS or an email body, not HTML.
* Unknown variables are refused when a template is saved: it must compile and render, strictly (every
  undefined name an error), against ``SAMPLE``, which holds every variable there is; so a typo
  (``{{ customer.frist_name }}``) or a reach outside the sandbox is a 422 then, not a surprise when an
  agent uses it.
* When rendered for real, a known variable without a value (a customer with no email) renders empty
  (``ChainableUndefined``): a missing detail must not stop an agent's reply or an acknowledgement.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment(autoescape=False, undefined=ChainableUndefined, keep_trailing_newline=True)
# The check on save: an undefined name, and so a blocked attribute (the sandbox answers it with an
# undefined carrying SecurityError), fails instead of rendering empty.
_STRICT = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)

# Every variable a template may use, with a sample value for the check on save.
SAMPLE: Mapping[str, Any] = {
    "customer": {
        "first_name": "Ada",
        "display_name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+14155550100",
    },
    "conversation": {"id": "00000000-0000-0000-0000-000000000000", "channel": "email"},
    "channel": "email",
    "agent": {"id": "00000000-0000-0000-0000-000000000000"},
    "wait_minutes": 5,
    "wait_seconds": 300,
    "position": 3,
    "opens_at": "Monday 09:00 CET",
    "timezone": "Europe/Paris",
}


class TemplateRefused(ValueError):
    """The template does not compile, or tried something the sandbox forbids."""


@functools.lru_cache(maxsize=512)
def _compiled(source: str, strict: bool = False) -> Template:
    try:
        return (_STRICT if strict else _ENV).from_string(source)
    except TemplateError as exc:
        raise TemplateRefused(f"the template does not compile: {exc}") from exc


def _present(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Without the values that are None, so they render empty (jinja2 would write "None")."""
    return {k: _present(v) if isinstance(v, Mapping) else v for k, v in variables.items() if v is not None}


def render(source: str, variables: Mapping[str, Any], *, strict: bool = False) -> str:
    """``source`` filled with ``variables`` (None values are undefined: they render empty and test false);
    TemplateRefused when it fails (a sandbox refusal included)."""
    template = _compiled(source, strict)
    try:
        return template.render(**_present(variables))
    except TemplateError as exc:  # SecurityError and UndefinedError are TemplateErrors
        raise TemplateRefused(f"the template cannot be rendered: {exc}") from exc
    except (ArithmeticError, TypeError, ValueError) as exc:  # {{ 1 / 0 }}, {{ "a" + 1 }}
        raise TemplateRefused(f"the template cannot be rendered: {exc}") from exc


def check(source: str) -> str:
    """``source`` if it compiles and renders strictly against ``SAMPLE``; TemplateRefused otherwise."""
    render(source, SAMPLE, strict=True)
    return source


def first_name(display_name: str | None) -> str | None:
    """The first word of a display name: what a greeting uses."""
    if not display_name or not display_name.split():
        return None
    return display_name.split()[0]
