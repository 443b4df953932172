"""What keeps the labelling app's page and records safe from the answers and other web pages.

Three threats, three defences:

* **Answers are hostile text.** A model's answer (or a prompt) may hold HTML or script. The
  page builds every element with ``textContent`` and never parses answer text as HTML; on top
  of that, the Content-Security-Policy allows only the page's own inline script and style (by
  hash), no images, frames, forms or other origins, so injected markup could not run or load
  anything even if it were parsed.
* **Other web pages in the same browser** (cross-site request forgery). A label is written
  only by a ``POST`` with the per-server token the page carries, an ``application/json``
  body and, when the browser sends one, an ``Origin`` equal to the server's own. A foreign
  page cannot read the token (the same-origin policy) and cannot send JSON or the token
  header without a CORS preflight, which this server never grants.
* **DNS rebinding** (a foreign name resolving to 127.0.0.1 to become "same origin"). Every
  request must carry a ``Host`` that names this server: a loopback name, or the ``--host``
  given, with the server's port.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from importlib import resources

TOKEN_HEADER = "X-Label-Token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})
_PLACEHOLDER = "{{TOKEN}}"

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Sent with every response: no MIME sniffing, no caching of labels, no framing."""

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""The policy of JSON and empty responses: nothing may load or run in them."""


@dataclass(frozen=True)
class Page:
    """The labelling page as served, its token and the policy that lets only it run."""

    html: bytes
    token: str
    csp: str


def load_page() -> Page:
    """``page.html`` with a fresh token, and a CSP naming its inline script and style by hash.

    Hashes instead of ``'unsafe-inline'``: the page stays one static, self-contained file, and
    a script or style that is not byte-for-byte the page's own is refused by the browser.
    """
    template = (resources.files("evalharness.label") / "page.html").read_text(encoding="utf-8")
    token = secrets.token_urlsafe(32)
    html = template.replace(_PLACEHOLDER, token)
    return Page(html.encode("utf-8"), token, page_csp(html))


def page_csp(html: str) -> str:
    """The Content-Security-Policy of a page with exactly one inline script and one style.

    >>> policy = page_csp("<style>p{}</style><script>go()</script>")
    >>> policy.split("; ")[:3]  # doctest: +ELLIPSIS
    ["default-src 'none'", "script-src 'sha256-...'", "style-src 'sha256-...'"]
    """
    script = _inline_hash(html, "script")
    style = _inline_hash(html, "style")
    return "; ".join([
        "default-src 'none'", f"script-src '{script}'", f"style-src '{style}'",
        "connect-src 'self'", "img-src 'none'", "font-src 'none'", "media-src 'none'",
        "object-src 'none'", "frame-src 'none'", "worker-src 'none'", "base-uri 'none'",
        "form-action 'none'", "frame-ancestors 'none'",
    ])


def _inline_hash(html: str, tag: str) -> str:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    if len(found) != 1:  # the page is ours: this guards an edit to page.html
        raise RuntimeError(f"page.html must hold exactly one inline <{tag}>, found "
                           f"{len(found)}")
    digest = hashlib.sha256(found[0].encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def host_allowed(host_header: str | None, bound_host: str, port: int) -> bool:
    """Whether a request's ``Host`` names this server (the DNS-rebinding check).

    >>> host_allowed("127.0.0.1:8000", "127.0.0.1", 8000)
    True
    >>> host_allowed("localhost:8000", "127.0.0.1", 8000)
    True
    >>> host_allowed("evil.example:8000", "127.0.0.1", 8000)
    False
    >>> host_allowed("127.0.0.1:9999", "127.0.0.1", 8000)
    False
    """
    if not host_header:
        return False
    name, _, given_port = host_header.strip().rpartition(":")
    if given_port != str(port) or not name:
        return False
    if bound_host in ANY_ADDRESS:  # the user chose to serve every interface
        return True
    return name.lower() in LOOPBACK_NAMES | {bound_host.lower(), f"[{bound_host.lower()}]"}


def origin_allowed(origin: str | None, fetch_site: str | None, host_header: str) -> bool:
    """Whether a write comes from this server's own page (the cross-site check).

    A missing ``Origin`` is a client that is not a browser page (a browser always sends one
    with ``fetch`` POSTs); it still needs the token.

    >>> origin_allowed("http://127.0.0.1:8000", "same-origin", "127.0.0.1:8000")
    True
    >>> origin_allowed("http://evil.example", "cross-site", "127.0.0.1:8000")
    False
    >>> origin_allowed("null", None, "127.0.0.1:8000")
    False
    """
    if fetch_site is not None and fetch_site not in {"same-origin", "none"}:
        return False
    return origin is None or origin == f"http://{host_header.strip()}"


def token_matches(given: str | None, token: str) -> bool:
    """Whether the request carries this server's token (compared in constant time)."""
    return given is not None and secrets.compare_digest(given.encode(), token.encode())
