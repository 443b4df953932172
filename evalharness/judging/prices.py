"""Judge prices: USD per 1,000 tokens, and whether a config's prices apply to an endpoint.

A config's ``price_per_1k`` is what its own ``base_url`` charges (the shipped judges carry
OpenAI's). Pointed elsewhere, a judge's tokens cost what that endpoint charges, which the
config cannot know: a local vLLM charges nothing per token, another provider its own rates.
So ``JudgeConfig.with_overrides`` unprices a judge whose endpoint is not its config's own
(``same_endpoint``), unless ``--judge-price IN,OUT`` (``parse_price``) prices it.
"""

from __future__ import annotations

import math
from typing import NamedTuple
from urllib.parse import urlsplit

from evalharness.errors import UserError
from evalharness.redact import strip_userinfo

PRICE_FLAG = "--judge-price"


class Price(NamedTuple):
    """USD per 1,000 tokens."""

    input_per_1k: float
    output_per_1k: float


def parse_price(text: str, flag: str = PRICE_FLAG) -> Price:
    """Read ``IN,OUT``: USD per 1,000 input and output tokens.

    >>> parse_price("0.00015, 0.0006")
    Price(input_per_1k=0.00015, output_per_1k=0.0006)
    >>> parse_price("0,0")
    Price(input_per_1k=0.0, output_per_1k=0.0)

    Raises:
        UserError: not two finite numbers >= 0 separated by a comma (naming ``flag``).
    """
    parts = text.split(",")
    values: list[float] = []
    for part in parts:
        try:
            values.append(float(part))
        except ValueError:
            break
    if len(parts) != 2 or len(values) != 2 or not all(
            math.isfinite(v) and v >= 0 for v in values):
        raise UserError(
            f"{flag} {text!r} is not a price: it takes two numbers >= 0, USD per 1,000 input "
            f"and output tokens, separated by a comma. Fix: e.g. {flag} 0.00015,0.0006 (or "
            f"{flag} 0,0 for a judge that costs nothing).")
    return Price(values[0], values[1])


def same_endpoint(url: str, other: str) -> bool:
    """Whether two base URLs name one endpoint (case of scheme and host, default ports,
    credentials and a trailing slash aside).

    >>> same_endpoint("https://API.openai.com/v1/", "https://api.openai.com:443/v1")
    True
    >>> same_endpoint("http://localhost:8000/v1", "https://api.openai.com/v1")
    False
    """
    def norm(value: str) -> tuple[str, str, int | None, str]:
        parts = urlsplit(strip_userinfo(value.strip()))
        try:
            port = parts.port
        except ValueError:
            port = None
        default = {"http": 80, "https": 443}.get(parts.scheme.lower())
        return (parts.scheme.lower(), (parts.hostname or "").lower(), port or default,
                parts.path.rstrip("/"))

    return norm(url) == norm(other)
