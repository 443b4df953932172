"""A real OpenAI-compatible chat-completions server on 127.0.0.1, scripted by the test.

The server speaks HTTP/1.1 with keep-alive, so the real ``openai`` client talks to it exactly
as it would to a hosted API or a local vLLM. A *responder* (a function of the request) picks
each reply from the request's content; faults can be injected by call index (``faults``) or
by content (the responder returns a ``Fault``). Every call received is counted and kept.

    with FakeOpenAIServer(lambda call: Reply("[[A]]")) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        ...
        assert server.n_calls == 2

Run as a script (``python -m tests.fakes.openai_server --latency 0.05``) it serves until
killed and prints its base URL, for benchmarks that want the server in another process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

TopLogprobs = Sequence[tuple[str, float]]


@dataclass(frozen=True)
class Reply:
    """A successful completion.

    ``top_logprobs`` gives, for each generated token, the alternatives and their log-probs
    (most likely first); the generated tokens are ``tokens`` (default: the whole ``text`` as
    one token). The server returns only as many alternatives as the request asked for.
    """

    text: str
    top_logprobs: Sequence[TopLogprobs] | None = None
    tokens: Sequence[str] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"
    delay: float = 0.0
    """Extra seconds before this reply (on top of the server's latency)."""


@dataclass(frozen=True)
class Fault:
    """A failure to inject instead of a reply."""

    kind: Literal["status", "drop", "malformed", "hang"]
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    message: str = "injected failure"

    @classmethod
    def rate_limited(cls, retry_after: float | None = 0.2) -> Fault:
        """HTTP 429, with a Retry-After header in seconds when given."""
        return cls("status", status=429, retry_after=retry_after, message="rate limited")

    @classmethod
    def server_error(cls, status: int = 500, message: str = "internal error") -> Fault:
        """An HTTP error status (5xx by default; 4xx for rejections)."""
        return cls("status", status=status, message=message)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Answer only after ``seconds`` (longer than the client's timeout: a timeout)."""
        return cls("hang", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def malformed(cls) -> Fault:
        """HTTP 200 whose JSON body is cut off."""
        return cls("malformed")


@dataclass(frozen=True)
class Call:
    """One request the server received."""

    index: int
    """0-based arrival order over the server's life."""
    body: dict[str, Any]
    headers: dict[str, str]
    """Request headers, names lower-cased."""
    received: float
    """``time.monotonic()`` at arrival."""
    seen: int
    """How many earlier calls carried the same messages (0 on the first)."""

    @property
    def text(self) -> str:
        """All message contents joined by newlines."""
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


Responder = Callable[[Call], "Reply | Fault"]

_BLOCK = r"<<<ANSWER {slot} id=(?P<id>\w+)>>>\n(?P<text>.*?)\n<<<END ANSWER {slot} id=(?P=id)>>>"


def answers_in(call: Call) -> tuple[str, str]:
    """The texts of answers A and B in the last message of a request made from evalharness's
    judge templates.

    Raises:
        ValueError: the request does not hold both fenced answer blocks.
    """
    messages = call.body.get("messages") or [{}]
    user = str(messages[-1].get("content", ""))  # the system message shows an empty example
    found: list[str] = []
    for slot in ("A", "B"):
        match = re.search(_BLOCK.format(slot=slot), user, flags=re.DOTALL)
        if match is None:
            raise ValueError(f"no answer {slot} block in the request")
        found.append(match.group("text"))
    return found[0], found[1]


def _default_responder(call: Call) -> Reply:
    return Reply("[[A]]")


@dataclass(frozen=True)
class Request:
    """Any HTTP request the server received (model lists and wrong routes included)."""

    method: str
    path: str
    headers: dict[str, str]
    """Request headers, names lower-cased."""


@dataclass
class _State:
    responder: Responder
    latency: float
    faults: dict[int, Fault]
    models: tuple[str, ...] | None = None
    api_key: str | None = None
    dead: bool = False
    loads: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeOpenAIServer:
    """An OpenAI-compatible ``/v1/chat/completions`` server in a background thread.

    Args:
        responder: picks the reply (or a ``Fault``) for each call from its content.
        latency: seconds every call waits before answering.
        faults: faults by call index (0-based arrival order), applied before the responder.
        models: when given, the only models served, as a real server would: ``/models``
            lists them and a completion for any other model is a 404 (by default any model
            is answered and ``/models`` lists ``fake-judge``).
        api_key: when given, every request must carry ``Authorization: Bearer <api_key>``,
            else it gets a 401.

    With ``models`` given, ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` add and
    remove served names as vLLM's runtime LoRA updating does (``loads`` lists every load).
    """

    def __init__(self, responder: Responder | None = None, *, latency: float = 0.0,
                 faults: Mapping[int, Fault] | None = None, models: Sequence[str] | None = None,
                 api_key: str | None = None) -> None:
        self._state = _State(responder or _default_responder, latency, dict(faults or {}),
                             None if models is None else tuple(models), api_key)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------------------------

    @property
    def responder(self) -> Responder:
        """The current responder (settable between or during runs)."""
        return self._state.responder

    @responder.setter
    def responder(self, value: Responder) -> None:
        self._state.responder = value

    @property
    def latency(self) -> float:
        """Seconds each call waits (settable)."""
        return self._state.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._state.latency = value

    def inject(self, faults: Mapping[int, Fault]) -> None:
        """Add faults by call index."""
        with self._state.lock:
            self._state.faults.update(faults)

    def clear_faults(self) -> None:
        """Remove every fault injected by call index."""
        with self._state.lock:
            self._state.faults.clear()

    # -- observation -----------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every call received so far, in arrival order."""
        with self._state.lock:
            return list(self._state.calls)

    @property
    def requests(self) -> list[Request]:
        """Every HTTP request received so far (any route), in arrival order."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def loads(self) -> list[str]:
        """Every adapter name loaded through ``/v1/load_lora_adapter``, in order."""
        with self._state.lock:
            return list(self._state.loads)

    @property
    def n_calls(self) -> int:
        """How many calls were received."""
        with self._state.lock:
            return len(self._state.calls)

    # -- life cycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self, port: int = 0) -> FakeOpenAIServer:
        """Listen on 127.0.0.1 (a free port unless given) and serve in a daemon thread."""
        handler = type("Handler", (_Handler,), {"state": self._state})
        server = ThreadingHTTPServer(("127.0.0.1", port), handler, bind_and_activate=False)
        server.daemon_threads = True
        server.block_on_close = False
        server.request_queue_size = 512  # bursts of concurrent connects must not be refused
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-openai")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (calls still sleeping in their threads are abandoned)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def kill(self) -> None:
        """Die as a killed server does: stop listening, and drop every request that arrives
        from now on, on connections already open too (a keep-alive connection would otherwise
        go on being served by its thread). Requests already admitted are still answered."""
        self._state.dead = True
        self.stop()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the client's
    # delayed ACK would hold every reply back ~40 ms and swamp the latency being simulated.
    disable_nagle_algorithm = True
    state: _State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _admitted(self) -> bool:
        """Record the request; answer 401 (and return False) when the key is wrong; drop the
        connection of a killed server."""
        state = self.state
        if state.dead:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return False
        with state.lock:
            state.requests.append(Request(self.command, self.path,
                                          {k.lower(): v for k, v in self.headers.items()}))
        if state.api_key is not None and (
                self.headers.get("Authorization") != f"Bearer {state.api_key}"):
            self._send_json(401, {"error": {"message": "Incorrect API key provided.",
                                            "type": "invalid_request_error",
                                            "code": "invalid_api_key"}})
            return False
        return True

    def do_GET(self) -> None:
        if not self._admitted():
            return
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "tests"}
                for name in (self.state.models or ("fake-judge",))]})
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if not self._admitted():
            return
        if self.path.rstrip("/").endswith("_lora_adapter") and self.state.models is not None:
            self._lora_admin(self.path.rstrip("/").rsplit("/", 1)[-1], json.loads(raw))
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "request body is not JSON"}})
            return
        state = self.state
        if state.models is not None and body.get("model") not in state.models:
            self._send_json(404, {"error": {
                "message": f"The model `{body.get('model')}` does not exist.",
                "type": "NotFoundError", "code": 404}})
            return
        signature = json.dumps(body.get("messages"), sort_keys=True)
        with state.lock:
            seen = state.seen.get(signature, 0)
            state.seen[signature] = seen + 1
            call = Call(index=len(state.calls), body=body,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        received=time.monotonic(), seen=seen)
            state.calls.append(call)
            fault: Reply | Fault | None = state.faults.get(call.index)
        if state.latency:
            time.sleep(state.latency)
        try:
            outcome = fault if fault is not None else state.responder(call)
        except Exception as exc:  # a broken script must show up in the test, not hang it
            self._send_json(500, {"error": {"message": f"responder failed: {exc!r}"}})
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(call, outcome)  # suppressed: the client gave up (a timeout test)

    def _lora_admin(self, action: str, body: dict[str, Any]) -> None:
        state = self.state
        name = str(body.get("lora_name"))
        assert state.models is not None
        with state.lock:
            if action == "load_lora_adapter":
                if name in state.models:
                    self._send_json(400, {"error": {"message": f"{name} is already loaded"}})
                    return
                state.models = (*state.models, name)
                state.loads.append(name)
            elif action == "unload_lora_adapter":
                state.models = tuple(m for m in state.models if m != name)
            else:
                self._send_json(404, {"error": {"message": f"no route {action}"}})
                return
        self._send_bytes(200, b"Success")

    def _answer(self, call: Call, outcome: Reply | Fault) -> None:
        if isinstance(outcome, Reply):
            if outcome.delay:
                time.sleep(outcome.delay)
            self._send_json(200, _completion(call, outcome))
            return
        if outcome.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if outcome.kind == "malformed":
            self._send_bytes(200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choi')
            return
        if outcome.kind == "hang":
            time.sleep(outcome.seconds)
            self._send_json(200, _completion(call, Reply("[[A]]")))
            return
        headers = {}
        if outcome.retry_after is not None:
            headers["Retry-After"] = f"{outcome.retry_after:g}"
        self._send_json(outcome.status, {"error": {"message": outcome.message,
                                                   "type": "injected", "code": None}}, headers)

    def _send_json(self, status: int, payload: object,
                   headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_bytes(self, status: int, data: bytes,
                    headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _completion(call: Call, reply: Reply) -> dict[str, Any]:
    prompt_tokens = reply.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = max(1, len(call.text) // 4)
    completion_tokens = reply.completion_tokens
    if completion_tokens is None:
        completion_tokens = max(1, len(reply.text) // 4)
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.text},
        "finish_reason": reply.finish_reason,
        "logprobs": None,
    }
    if call.body.get("logprobs"):
        choice["logprobs"] = {"content": _logprobs(reply, int(call.body.get("top_logprobs") or 0))}
    return {
        "id": f"chatcmpl-{call.index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(call.body.get("model", "fake-judge")),
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _logprobs(reply: Reply, top_n: int) -> list[dict[str, Any]]:
    tokens = list(reply.tokens) if reply.tokens is not None else [reply.text]
    alternatives = list(reply.top_logprobs or [])
    out: list[dict[str, Any]] = []
    for position, token in enumerate(tokens):
        top = list(alternatives[position]) if position < len(alternatives) else [(token, 0.0)]
        chosen = next((lp for t, lp in top if t == token), math.log(1e-6))
        out.append({
            "token": token, "logprob": chosen, "bytes": list(token.encode("utf-8")),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}
                             for t, lp in top[:top_n]],
        })
    return out


def main() -> None:
    """Serve until killed: ``python -m tests.fakes.openai_server --latency 0.05``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--verdict", default="[[A]]", help="Text of every reply.")
    args = parser.parse_args()
    verdict = args.verdict
    server = FakeOpenAIServer(lambda call: Reply(verdict), latency=args.latency).start(args.port)
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
