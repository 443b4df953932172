"""The labelling server: one page and two JSON endpoints on 127.0.0.1.

Built on the standard library's ``http.server.ThreadingHTTPServer``: the app is one static
page, ``GET /api/state`` and ``POST /api/label``, used by one person (or a few) on their own
machine, so a web framework would add a dependency and nothing the app needs. Threads keep a
slow or stalled browser connection from blocking the next request; one lock serialises every
read and write of the labelling state and the judgments file.

The server holds the run's writer lock (``RunDir.lock``) while it serves, so no other command
appends to the run meanwhile, and records its invocation (command ``label``) in the
manifest. Each label is appended to ``RUN/judgments.jsonl`` and fsynced the moment it is
made: stopping the server (or losing the machine) loses no label.

Endpoints::

    GET  /                         the page (token embedded; CSP by hash, see security.py)
    GET  /api/state?annotator=N    progress and the next game (no model names)
    POST /api/label                {"annotator", "game", "choice": left|right|tie|skip}
                                   with header X-Label-Token; answers with the new state
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

from evalharness.errors import UserError
from evalharness.label.games import load_games, plan_games
from evalharness.label.labels import check_annotator, human_judge
from evalharness.label.security import (
    ANY_ADDRESS,
    API_CSP,
    COMMON_HEADERS,
    TOKEN_HEADER,
    Page,
    host_allowed,
    load_page,
    origin_allowed,
    token_matches,
)
from evalharness.label.session import AnnotatorSession
from evalharness.schema import Invocation, Judgment
from evalharness.store import JUDGMENTS, JsonlLog, RunDir, utc_now

MAX_BODY = 4096
"""Largest label request accepted, in bytes (a label is under 100)."""
CHOICES = frozenset({"left", "right", "tie", "skip"})


class Response(NamedTuple):
    """What the app answers; the handler only writes it out."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    csp: str = API_CSP


def _json(status: int, value: object) -> Response:
    return Response(status, json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


@dataclass(frozen=True)
class Progress:
    """Where one annotator stands."""

    annotator: str
    labelled: int
    """Games of the plan labelled, before and during this session."""
    total: int
    """Games in the plan."""
    saved: int
    """Labels written while this server ran."""


class LabelApp:
    """The app without the HTTP plumbing: requests in, ``Response`` out."""

    def __init__(self, page: Page, sessions: Mapping[str, AnnotatorSession],
                 write: Callable[[Judgment], None], host: str, port: int,
                 prompt_note: str | None) -> None:
        self.page = page
        self.sessions = sessions
        self.write = write
        self.host = host
        self.port = port
        self.prompt_note = prompt_note
        self.lock = threading.Lock()

    def get(self, target: str, headers: Mapping[str, str]) -> Response:
        """Answer a GET of ``target`` (path and query); ``headers`` are keyed in lower case."""
        if not host_allowed(headers.get("host"), self.host, self.port):
            return _error(403, "this server answers only to its own address (Host header)")
        url = urlsplit(target)
        if url.path == "/":
            return Response(200, self.page.html, "text/html; charset=utf-8", self.page.csp)
        if url.path == "/favicon.ico":
            return Response(204)  # no icon: a 404 would be a console error in every tab
        if url.path == "/api/state":
            names = parse_qs(url.query).get("annotator", [])
            return self._state(names[0] if names else None)
        return _error(404, f"no such page: {url.path}")

    def _state(self, annotator: str | None) -> Response:
        if annotator is None and len(self.sessions) > 1:
            return _json(200, {"annotators": sorted(self.sessions)})
        session = self._session(annotator)
        if session is None:
            return _error(404, f"no annotator {annotator!r} here; this server labels as "
                          f"{', '.join(sorted(self.sessions))}")
        with self.lock:
            return _json(200, {**session.state(), "prompt_note": self.prompt_note})

    def _session(self, annotator: object) -> AnnotatorSession | None:
        if annotator is None and len(self.sessions) == 1:
            return next(iter(self.sessions.values()))
        return self.sessions.get(annotator) if isinstance(annotator, str) else None

    def post(self, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer a POST: only ``/api/label``, only from this server's own page."""
        refused = self._refuse_write(headers)
        if refused is not None:
            return refused
        if urlsplit(target).path != "/api/label":
            return _error(404, "labels are posted to /api/label")
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        if not isinstance(request, dict):
            return _error(400, "the body must be a JSON object")
        return self._label(request)

    def _refuse_write(self, headers: Mapping[str, str]) -> Response | None:
        host = headers.get("host")
        if not host_allowed(host, self.host, self.port):
            return _error(403, "this server answers only to its own address (Host header)")
        if not origin_allowed(headers.get("origin"), headers.get("sec-fetch-site"),
                              host or ""):
            return _error(403, "labels are accepted only from this server's own page")
        if not token_matches(headers.get(TOKEN_HEADER.lower()), self.page.token):
            return _error(403, "missing or wrong token: reload the page")
        if (headers.get("content-type") or "").split(";")[0].strip() != "application/json":
            return _error(415, "labels are sent as application/json")
        return None

    def _label(self, request: dict[str, Any]) -> Response:
        session = self._session(request.get("annotator"))
        if session is None:
            return _error(404, f"no annotator {request.get('annotator')!r} here")
        choice = request.get("choice")
        if choice not in CHOICES:
            return _error(400, f"choice must be one of {', '.join(sorted(CHOICES))}")
        index = session.find(request.get("game"))
        if index is None:
            return _error(400, "no such game in this plan: reload the page")
        with self.lock:
            try:
                if choice == "skip":
                    session.skip(index)
                    stored = False
                else:
                    stored = session.label(index, choice, self.write)
            except OSError as exc:
                return _error(500, f"the label was not saved ({exc.strerror or exc}); "
                              "check the disk, then press the key again")
            return _json(200, {"stored": stored, "state": session.state(),
                               "prompt_note": self.prompt_note})

    def progress(self) -> list[Progress]:
        """Every annotator's progress, by name."""
        with self.lock:
            return [Progress(s.annotator, s.labelled, len(s.plan), s.saved)
                    for _, s in sorted(self.sessions.items())]


class _HTTPServer(ThreadingHTTPServer):
    """A threading server that carries the app its handlers answer with."""

    daemon_threads = True
    app: LabelApp | None = None


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """HTTP in and out; every decision is ``LabelApp``'s."""

    server: _HTTPServer
    timeout = 30  # an idle connection frees its thread

    def do_GET(self) -> None:
        self._send(lambda app: app.get(self.path, self._headers()))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            self._write(_error(413, "request too large"))
            return
        body = self.rfile.read(length)
        self._send(lambda app: app.post(self.path, self._headers(), body))

    def _headers(self) -> dict[str, str]:
        # HTTP header names are case-insensitive (urllib sends "Content-type"): lower them.
        return {name.lower(): value for name, value in self.headers.items()}

    def _send(self, answer: Callable[[LabelApp], Response]) -> None:
        app = self.server.app
        self._write(_error(503, "starting") if app is None else answer(app))

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in {**COMMON_HEADERS, "Content-Security-Policy": response.csp}.items():
            self.send_header(name, value)
        if response.body:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def version_string(self) -> str:
        """The ``Server`` header: no Python version for a page that shows model output."""
        return "evalharness-label"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the URL and the counts, not every request."""


class LabelServer:
    """A running labelling server: its address, its progress, and how to stop it.

    Use as a context manager, or call ``shutdown`` (idempotent) when done.
    """

    def __init__(self, httpd: _HTTPServer, app: LabelApp, stack: ExitStack, url: str,
                 judged: bool) -> None:
        self._httpd = httpd
        self.app = app
        self._stack = stack
        self.url = url  # the page's address, e.g. http://127.0.0.1:8765/
        self.judged = judged  # games are the judge's pairs (else: every answered pair)
        # A short poll: shutdown() waits for the loop to notice, and Ctrl-C should feel instant.
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="evalharness-label", daemon=True)
        self._thread.start()

    def url_for(self, annotator: str) -> str:
        """The page's address for one annotator (needed when the server labels as several)."""
        return f"{self.url}?annotator={quote(annotator)}"

    def progress(self) -> list[Progress]:
        """Every annotator's progress."""
        return self.app.progress()

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C raises ``KeyboardInterrupt`` here."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def shutdown(self) -> None:
        """Stop serving, close the judgments file, update the manifest, release the lock."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._stack.close()

    def __enter__(self) -> LabelServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.shutdown()


def serve(run_dir: Path, annotators: str | Sequence[str], *, plan: str = "random",
          seed: int = 0, limit: int | None = None, host: str = "127.0.0.1", port: int = 0,
          argv: Sequence[str] = ()) -> LabelServer:
    """Start labelling ``run_dir`` in a background thread and return the running server.

    Every check that can fail on input (names, run, plan, lock, port) runs before the server
    answers anything. ``port=0`` picks a free port (see ``LabelServer.url``).

    Raises:
        UserError: a bad annotator name, not a run or nothing to label, an unknown plan,
            another command writing the run, or a host/port that cannot be served.
    """
    names = list(dict.fromkeys([annotators] if isinstance(annotators, str) else annotators))
    if not names:
        raise UserError("no annotator given. Fix: pass --annotator NAME (your name).")
    for name in names:
        check_annotator(name)
    run = RunDir(run_dir)
    games = load_games(run)
    ordered = plan_games(games.games, plan, seed, limit)
    with ExitStack() as stack:
        stack.enter_context(run.lock(argv))
        httpd = _bind(host, port)
        stack.callback(httpd.server_close)
        stack.enter_context(_recorded(run, argv))
        log: JsonlLog[Judgment] = run.log(JUDGMENTS, Judgment)
        stack.callback(log.close)
        done = _labelled_keys(log)
        sessions = {n: AnnotatorSession(n, ordered, seed, done.get(human_judge(n), set()))
                    for n in names}
        httpd.app = LabelApp(load_page(), sessions, _writer(log), host,
                             httpd.server_address[1], games.prompt_note)
        return LabelServer(httpd, httpd.app, stack.pop_all(), _url(host, httpd), games.judged)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: ExitStack may swallow)


def _labelled_keys(log: JsonlLog[Judgment]) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for j in log.read():
        keys.setdefault(j.judge, set()).add(j.key)
    return keys


def _writer(log: JsonlLog[Judgment]) -> Callable[[Judgment], None]:
    def write(judgment: Judgment) -> None:
        log.append(judgment)
        log.checkpoint()  # a label is a person's minute: on disk before the page moves on

    return write


def _bind(host: str, port: int) -> _HTTPServer:
    kind = _HTTPServer6 if ":" in host else _HTTPServer
    try:
        return kind((host, port), _Handler)
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port} ({exc.strerror or exc}). Fix: pass "
                        "--port 0 (any free port) or another --port, and a --host of this "
                        "machine (default 127.0.0.1).") from None


def _url(host: str, httpd: _HTTPServer) -> str:
    port = httpd.server_address[1]
    name = "127.0.0.1" if host in ANY_ADDRESS else host
    return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"


@contextmanager
def _recorded(run: RunDir, argv: Sequence[str]) -> Iterator[None]:
    """List this command in the manifest's ``invocations``; on leaving, update its counts.

    The run still belongs to the command that made it (its status and inputs are untouched):
    labels are an addition, recorded like any later writer. Call with the run's lock held.
    """
    manifest = run.read_manifest()
    invocation = Invocation(command="label", argv=tuple(argv), started=utc_now())
    run.write_manifest(manifest.model_copy(update={
        "invocations": (*manifest.invocations, invocation), "updated": utc_now()}))
    try:
        yield
    finally:
        manifest = run.read_manifest()
        counts = {**manifest.counts, JUDGMENTS: _count_lines(run.path / JUDGMENTS)}
        run.write_manifest(manifest.model_copy(update={"counts": counts,
                                                       "updated": utc_now()}))


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.endswith(b"\n"))
