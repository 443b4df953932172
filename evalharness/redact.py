"""Keep secrets out of everything evalharness writes or prints.

A URL can carry credentials (``http://user:pass@host/v1``) and a command line can carry a key
(``--api-key sk-...``). Run files, reports and messages are meant to be shared, so every
string that may hold one passes through here before it is written or printed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# Greedy up to the authority's LAST "@": a password typed with a raw "@" in it
# (http://u:p@ss@host) is read that way by urllib and httpx, so all of it is masked.
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]+)@")
# Any parameter whose name says it holds a secret: api_key, x-api-key, subscription-key,
# access_token, client_secret, password, sig (signed URLs), ...
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;][\w.-]*(?:key|token|secret|passw(?:or)?d|pwd|sig|signature|auth|"
    r"credential)[\w.-]*=)(?P<value>[^&#;\s'\"]+)",
    re.IGNORECASE,
)
# Keys that travel outside URLs, e.g. echoed in an endpoint's error body: an Authorization
# header value, and the shapes of well-known provider keys (OpenAI sk-..., Hugging Face hf_...).
_SECRET_TOKENS = re.compile(
    r"(?P<lead>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{6,}"
    r"|\b(?:sk-[A-Za-z0-9_-]{6,}|hf_[A-Za-z0-9]{10,})",
)
_known_secrets: set[str] = set()
# Options whose value is a secret (--api-key, --hf-token, --password, ...); not --api-key-env,
# whose value is only the NAME of a variable and is worth keeping.
_SECRET_OPTION = re.compile(r"--[\w-]*(?:key|token|passw(?:or)?d|secret)", re.IGNORECASE)


def remember_secret(value: str | None) -> None:
    """Mask ``value`` itself from now on in everything ``redact_text`` sees.

    For a key read from the environment: whatever shape it has, a message or log line that
    echoes it (an endpoint's error body, a client's exception) is cleaned. Values shorter
    than 6 characters are ignored: masking them would garble ordinary words.
    """
    if value and len(value.strip()) >= 6:
        _known_secrets.add(value.strip())


def redact_text(text: str) -> str:
    """``text`` with URL credentials, secret query parameters and keys masked.

    >>> redact_text("judge at http://alice:s3cret@127.0.0.1:8000/v1 failed")
    'judge at http://***@127.0.0.1:8000/v1 failed'
    >>> redact_text("http://alice:p@ss@host/v1")
    'http://***@host/v1'
    >>> redact_text("https://host/v1?api_key=abc&x=1&subscription-key=k")
    'https://host/v1?api_key=***&x=1&subscription-key=***'
    >>> redact_text("401: Incorrect API key provided: sk-abc123def456. Bearer xyz.789-abc")
    '401: Incorrect API key provided: ***. Bearer ***'
    >>> redact_text("plain words, a task-list and risk-free hf_ mentions")
    'plain words, a task-list and risk-free hf_ mentions'
    """
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m['name']}{MASK}", text)
    return _SECRET_TOKENS.sub(lambda m: f"{m['lead'] or ''}{MASK}", text)


def redact_argv(argv: Iterable[str]) -> tuple[str, ...]:
    """A command line with URL credentials and the values of secret options masked.

    >>> redact_argv(["evalharness", "--judge-url", "http://u:p@h/v1", "--api-key", "sk-1"])
    ('evalharness', '--judge-url', 'http://***@h/v1', '--api-key', '***')
    >>> redact_argv(["x", "--token=abc", "--api-key-env", "MY_KEY", "--hf-token", "hf"])
    ('x', '--token=***', '--api-key-env', 'MY_KEY', '--hf-token', '***')
    """
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        option, sep, _ = arg.partition("=")
        if _SECRET_OPTION.fullmatch(option):
            if sep:
                out.append(f"{option}={MASK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_text(arg))
    return tuple(out)


def strip_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` part of its host, if it has one.

    HTTP clients turn that part into a Basic ``Authorization`` header, which would send the
    password to the server (and replace the configured key), so it is taken off before a
    client is built from the URL.

    >>> strip_userinfo("http://alice:s3cret@127.0.0.1:8000/v1")
    'http://127.0.0.1:8000/v1'
    >>> strip_userinfo("https://[::1]:8000/v1?x=1")
    'https://[::1]:8000/v1?x=1'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
