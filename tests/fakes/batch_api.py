"""The loopback fake OpenAI server with the Files and Batches endpoints of the Batch API.

``FakeBatchServer`` is a ``FakeOpenAIServer`` (chat completions, scripted by a responder,
faults, key checks) that also serves what batch judging uses:

- ``POST /v1/files`` (multipart upload, ``purpose=batch``),
- ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches`` (newest first),
- ``GET /v1/files/{id}/content`` (the input, output and error files).

A batch stays ``in_progress`` for ``polls`` retrievals (or as long as ``hold`` is set), then
every line is answered by the same responder as the chat endpoint: a ``Reply`` becomes an
output line with the same completion body the chat endpoint returns, a ``Fault`` an error
line with its status. Lines ``expire`` picks are not run: the batch ends ``expired`` and
they appear in the error file with ``batch_expired``; ``fail_with`` ends every batch
``failed`` at validation (no files). Batch lines share the chat endpoint's ``seen`` counts
(a scripted judge answering a repeated request differently sees them as one judge), but
are kept apart from ``calls``: ``n_calls`` counts online calls only, ``batch_calls`` the
lines run by batches, and ``count(route)`` every request to a route.

    with FakeBatchServer(lambda call: Reply("[[A]]"), polls=2) as server:
        ...
        assert server.count("batches.create") == 1
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import ThreadingHTTPServer
from typing import Any

from tests.fakes.openai_server import (
    Call,
    FakeOpenAIServer,
    Fault,
    Reply,
    Responder,
    _completion,
    _Handler,
)

ROUTES = ("files.create", "files.content", "batches.create", "batches.retrieve",
          "batches.list")
"""What ``FakeBatchServer.count`` counts (plus ``chat`` for online calls)."""


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str]
    created_at: int
    total: int
    status: str = "validating"
    retrievals: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id, "created_at": self.created_at,
            "request_counts": {"total": self.total, "completed": self.completed,
                               "failed": self.failed},
            "metadata": self.metadata,
        }


@dataclass
class _BatchState:
    polls: int
    hold: bool
    expire: Callable[[Call], bool] | None
    fail_with: str | None
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    batch_calls: list[Call] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeBatchServer(FakeOpenAIServer):
    """``FakeOpenAIServer`` plus the Files and Batches endpoints (see the module docstring).

    Args:
        responder: answers chat calls and batch lines alike.
        polls: retrievals a batch stays ``in_progress`` before it ends.
        hold: while set, batches never end (a test kills the client meanwhile).
        expire: lines (as calls) the batch never runs: it ends ``expired``.
        fail_with: every batch fails validation with this message.
        **kwargs: ``FakeOpenAIServer``'s (latency, faults, models, api_key).
    """

    def __init__(self, responder: Responder | None = None, *, polls: int = 2,
                 hold: bool = False, expire: Callable[[Call], bool] | None = None,
                 fail_with: str | None = None, **kwargs: Any) -> None:
        super().__init__(responder, **kwargs)
        self._batch = _BatchState(polls, hold, expire, fail_with)

    # -- scripting -------------------------------------------------------------------------

    @property
    def hold(self) -> bool:
        """Whether batches are kept ``in_progress`` (settable)."""
        return self._batch.hold

    @hold.setter
    def hold(self, value: bool) -> None:
        self._batch.hold = value

    @property
    def expire(self) -> Callable[[Call], bool] | None:
        """Which lines expire unrun (settable)."""
        return self._batch.expire

    @expire.setter
    def expire(self, value: Callable[[Call], bool] | None) -> None:
        self._batch.expire = value

    @property
    def fail_with(self) -> str | None:
        """The validation failure of every batch, if any (settable)."""
        return self._batch.fail_with

    @fail_with.setter
    def fail_with(self, value: str | None) -> None:
        self._batch.fail_with = value

    # -- observation -----------------------------------------------------------------------

    def count(self, route: str) -> int:
        """Requests received for ``route`` (one of ``ROUTES``, or ``chat``)."""
        if route == "chat":
            return self.n_calls
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r} (known: chat, {', '.join(ROUTES)})")
        with self._batch.lock:
            return self._batch.counts[route]

    @property
    def batch_calls(self) -> list[Call]:
        """Every line run by a batch, in the order run."""
        with self._batch.lock:
            return list(self._batch.batch_calls)

    @property
    def batch_ids(self) -> list[str]:
        """Every batch created, oldest first."""
        with self._batch.lock:
            return list(self._batch.batches)

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        """The JSON lines a batch was submitted with."""
        with self._batch.lock:
            data = self._batch.files[self._batch.batches[batch_id].input_file_id]
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]

    # -- life cycle ------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeBatchServer:
        """Listen on 127.0.0.1 (``FakeOpenAIServer.start``, with the batch routes)."""
        handler = type("BatchHandler", (_BatchHandler,),
                       {"state": self._state, "batch": self._batch})
        server = ThreadingHTTPServer(("127.0.0.1", port), handler, bind_and_activate=False)
        server.daemon_threads = True
        server.block_on_close = False
        server.request_queue_size = 512
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fake-batch-api")
        self._thread.start()
        return self

    def __enter__(self) -> FakeBatchServer:
        return self.start()


class _BatchHandler(_Handler):
    batch: _BatchState

    def _route(self) -> tuple[str, ...]:
        """The path after ``/v1`` as parts, without the query."""
        path = self.path.split("?", 1)[0].rstrip("/")
        parts = tuple(p for p in path.split("/") if p)
        return parts[1:] if parts[:1] == ("v1",) else parts

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        route = self._route()
        if route[:1] == ("batches",) and len(route) <= 2:
            if not self._admitted():
                return
            if len(route) == 1:
                self._count("batches.list")
                with self.batch.lock:
                    newest = [b.as_json() for b in reversed(self.batch.batches.values())]
                self._send_json(200, {"object": "list", "data": newest, "has_more": False,
                                      "first_id": newest[0]["id"] if newest else None,
                                      "last_id": newest[-1]["id"] if newest else None})
                return
            self._count("batches.retrieve")
            self._retrieve(route[1])
            return
        if route[:1] == ("files",) and len(route) == 3 and route[2] == "content":
            if not self._admitted():
                return
            self._count("files.content")
            with self.batch.lock:
                data = self.batch.files.get(route[1])
            if data is None:
                self._send_json(404, {"error": {"message": f"no file {route[1]}"}})
            else:
                self._send_bytes(200, data)
            return
        super().do_GET()

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        route = self._route()
        if route not in (("files",), ("batches",)):
            super().do_POST()  # chat completions: reads the body itself
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self._admitted():
            return
        if route == ("files",):
            self._count("files.create")
            self._upload(raw)
        else:
            self._count("batches.create")
            self._create(raw)

    # -- routes ----------------------------------------------------------------------------

    def _count(self, route: str) -> None:
        with self.batch.lock:
            self.batch.counts[route] += 1

    def _new_id(self, prefix: str) -> str:
        with self.batch.lock:
            return f"{prefix}-{next(self.batch.ids)}"

    def _upload(self, raw: bytes) -> None:
        head = f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + raw)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = (part.get_filename(),
                                 payload if isinstance(payload, bytes) else b"")
        if fields.get("purpose", (None, b""))[1] != b"batch" or "file" not in fields:
            self._send_json(400, {"error": {"message": "need purpose=batch and a file"}})
            return
        filename, data = fields["file"]
        file_id = self._new_id("file")
        with self.batch.lock:
            self.batch.files[file_id] = data
        self._send_json(200, {"id": file_id, "object": "file", "bytes": len(data),
                              "created_at": int(time.time()), "filename": filename or "upload",
                              "purpose": "batch", "status": "processed"})

    def _create(self, raw: bytes) -> None:
        body = json.loads(raw)
        with self.batch.lock:
            data = self.batch.files.get(str(body.get("input_file_id")))
        if data is None:
            self._send_json(404, {"error": {"message": "no such input file"}})
            return
        lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
        batch = _Batch(id=self._new_id("batch"), input_file_id=str(body["input_file_id"]),
                       endpoint=str(body.get("endpoint")),
                       completion_window=str(body.get("completion_window")),
                       metadata=dict(body.get("metadata") or {}),
                       created_at=int(time.time()), total=len(lines))
        with self.batch.lock:
            self.batch.batches[batch.id] = batch
        self._send_json(200, batch.as_json())

    def _retrieve(self, batch_id: str) -> None:
        with self.batch.lock:
            batch = self.batch.batches.get(batch_id)
            if batch is None:
                self._send_json(404, {"error": {"message": f"no batch {batch_id}"}})
                return
            batch.retrievals += 1
            ending = (batch.status not in ("completed", "failed", "expired")
                      and not self.batch.hold and batch.retrievals >= self.batch.polls)
            if batch.status not in ("completed", "failed", "expired") and not ending:
                batch.status = "in_progress"
                if not self.batch.hold:
                    batch.completed = batch.total * batch.retrievals // (self.batch.polls + 1)
        if ending:
            self._run(batch)
        with self.batch.lock:
            answer = batch.as_json()
        self._send_json(200, answer)

    # -- running a batch -------------------------------------------------------------------

    def _run(self, batch: _Batch) -> None:
        """Answer every line (or fail / expire them) and write the result files."""
        with self.batch.lock:
            data = self.batch.files[batch.input_file_id]
            fail_with = self.batch.fail_with
        lines = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        ids = [str(line.get("custom_id")) for line in lines]
        if fail_with is None and len(set(ids)) != len(ids):
            fail_with = "duplicate custom_id values in the input file"
        if fail_with is None and any(line.get("url") != batch.endpoint for line in lines):
            fail_with = "a line's url differs from the batch's endpoint"
        if fail_with is not None:
            with self.batch.lock:
                batch.status, batch.completed = "failed", 0
                batch.errors = [{"code": "invalid_file", "message": fail_with, "line": None,
                                 "param": None}]
            return
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for number, line in enumerate(lines):
            call = self._line_call(line["body"])
            expire = self.batch.expire
            if expire is not None and expire(call):
                errors.append({"id": f"batch_req_{number}", "custom_id": line["custom_id"],
                               "response": None, "error": {
                                   "code": "batch_expired",
                                   "message": "This request could not be executed before "
                                              "the completion window expired."}})
                continue
            with self.batch.lock:
                self.batch.batch_calls.append(call)
            answer = self._line_answer(call)
            entry = {"id": f"batch_req_{number}", "custom_id": line["custom_id"],
                     "response": answer, "error": None}
            (output if answer["status_code"] == 200 else errors).append(entry)
        expired = any(e["error"] is not None for e in errors)
        with self.batch.lock:
            if output:
                batch.output_file_id = self._store(output)
            if errors:
                batch.error_file_id = self._store(errors)
            batch.completed, batch.failed = len(output), len(errors)
            batch.status = "expired" if expired else "completed"

    def _line_call(self, body: Mapping[str, Any]) -> Call:
        state = self.state
        signature = json.dumps(body.get("messages"), sort_keys=True)
        with state.lock:
            seen = state.seen.get(signature, 0)
            state.seen[signature] = seen + 1
        with self.batch.lock:
            index = len(self.batch.batch_calls)
        return Call(index=index, body=dict(body), headers={}, received=time.monotonic(),
                    seen=seen)

    def _line_answer(self, call: Call) -> dict[str, Any]:
        try:
            outcome: Reply | Fault = self.state.responder(call)
        except Exception as exc:
            outcome = Fault.server_error(message=f"responder failed: {exc!r}")
        if isinstance(outcome, Reply):
            return {"status_code": 200, "request_id": f"req_{call.index}",
                    "body": _completion(call, outcome)}
        status = outcome.status if outcome.kind == "status" else 500
        return {"status_code": status, "request_id": f"req_{call.index}",
                "body": {"error": {"message": outcome.message, "type": "injected"}}}

    def _store(self, rows: Sequence[Mapping[str, Any]]) -> str:
        """Keep a result file (the batch lock is held by the caller)."""
        file_id = f"file-out-{next(self.batch.ids)}"
        self.batch.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
        return file_id
