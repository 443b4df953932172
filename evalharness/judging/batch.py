"""Batch judging: a hosted judge's Batch API, at its batch price (``--judge-mode batch``).

Hosted judges charge half for requests sent through their Batch API and answered within a
window (24 h). The games a run still needs are written as the Batch API's JSON lines (one
chat-completions request per game, ``custom_id`` = the game's content key, which already
holds the order of the answers), uploaded as a file, submitted as a batch, polled until it
ends, and the results mapped back by ``custom_id``.

A line's body is exactly the request the online judge sends for the game's first call
(``request_body``), and its result is read by the online judge's own reply parser
(``outcome_from_completion``): a game judged by batch gets the record it would have got
online, priced at ``config.cost(...) * config.batch_discount``.

Money is spent once. Every submission is recorded in ``RUN/batches.jsonl`` (``BatchRecord``)
before and after the provider has it: the uploaded file first, then the batch id, then
``done`` once its results are stored. A killed run, rerun, polls the recorded batch again
instead of submitting the games again; a run killed between upload and submission finds its
batch among the provider's by the record's token (batch metadata) before submitting.

What the batch does not answer goes to the online judge, the normal path: items that failed
or expired, a batch the provider refused, a reply that is not a completion, and a reply
without a readable verdict when the judge has ``invalid_retries`` left (then the online judge
asks it again exactly as it would have from the start, so the final judgment is the online
one; the batch call's tokens are still counted, at the batch price).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.errors import JudgeError, MissingExtraError, UserError
from evalharness.judging.base import Outcome
from evalharness.judging.config import JudgeConfig
from evalharness.judging.llm import (
    MalformedReplyError,
    api_key_for,
    parse_reply,
    read_verdict,
    request_body,
)
from evalharness.judging.templates import GameText
from evalharness.pipeline import Progress, SilentProgress
from evalharness.redact import redact_text, strip_userinfo
from evalharness.schema import KeyedRecord
from evalharness.store import JsonlLog, utc_now

BATCHES = "batches.jsonl"
"""The run's record of its batch submissions (``BatchRecord``), next to judgments.jsonl."""
ENDPOINT = "/v1/chat/completions"
MAX_LINES = 50_000
"""Requests per batch file (the OpenAI Batch API's limit); more games make more batches."""
MAX_BYTES = 190 * 1024 * 1024
"""Bytes per batch file, under the API's 200 MB limit."""
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})
"""Batch statuses that never change again: its results (if any) can be read."""
UPLOAD_TIMEOUT_S = 600.0
"""Seconds an upload may take (a batch file can be far larger than any single request)."""
LOOKUP_LIMIT = 100
"""Most recent batches searched for a submission whose id was never recorded."""
TOKEN_KEY = "evalharness_token"
"""Batch metadata key carrying the record's token (finds a batch submitted by a killed run)."""


class BatchRecord(KeyedRecord):
    """One submission, as ``RUN/batches.jsonl`` holds it.

    The file is append-only: each change of state appends the whole record again, and the
    last record of a ``key`` (the submission's token) is its state. ``done`` records are
    never polled again.
    """

    judge: str
    """The judge's name (as the judgments name it)."""
    fingerprint: str
    """The judge's fingerprint when submitted (``custom_ids`` are keys under it)."""
    custom_ids: list[str]
    """The games' content keys the batch asks, one line each."""
    input_file_id: str | None = None
    """The uploaded JSONL file."""
    batch_id: str | None = None
    """Set once the provider accepted the batch: a rerun polls it instead of resubmitting."""
    status: str = "uploaded"
    """``uploaded``, ``submitted``, then the provider's final status."""
    done: bool = False
    """Results stored (or sent to the online judge): nothing left to poll."""
    created: str
    updated: str


def outcome_from_completion(config: JudgeConfig, completion: object) -> Outcome:
    """Read one chat-completion body as the online judge reads its first reply.

    An unreadable verdict comes back invalid with the online judge's message for a judge
    that gives up after one reply; the caller decides whether retries are owed.

    Raises:
        ValueError: ``completion`` is not a chat completion.
    """
    try:
        reply = parse_reply(completion)
    except MalformedReplyError as exc:
        raise ValueError(str(exc)) from None
    verdict, weight = read_verdict(config, reply)
    if verdict.valid:
        return Outcome(verdict.label, verdict.winner, weight, redact_text(reply.text),
                       reply.usage, 1)
    error = verdict.error or "no verdict"
    if reply.finish_reason == "length":
        error += " (the reply was cut at max_tokens; raise max_tokens)"
    return Outcome(None, None, raw=redact_text(reply.text), usage=reply.usage, attempts=1,
                   error=redact_text(f"{error}; gave up after 1 replies without a readable "
                                     "verdict"))


def batch_lines(config: JudgeConfig, games: Mapping[str, GameText]) -> Iterator[bytes]:
    """The Batch API's JSON lines for ``games`` (custom id -> game), one request each."""
    for custom_id, game in games.items():
        line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT,
                "body": request_body(config, game)}
        yield (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")


def check_batch_config(config: JudgeConfig) -> None:
    """Refuse batch mode where no Batch API exists, before anything runs.

    Raises:
        UserError: batch mode with the reference judge or the in-process vLLM judge.
    """
    if config.mode != "batch":
        return
    if config.kind != "llm":
        raise UserError(f"judge '{config.name}' is a reference judge: it judges offline, "
                        "instantly and for free, so there is no batch to submit. Fix: drop "
                        "--judge-mode batch (or 'mode: batch' in its config.yaml).")
    if config.backend != "http":
        raise UserError(f"judge '{config.name}' runs in this process (--judge-backend "
                        f"{config.backend}): batch mode is for hosted judges' Batch APIs. Fix: "
                        "drop --judge-mode batch, or judge through an endpoint "
                        "(--judge-backend http).")


@dataclass
class BatchOutcome:
    """What the batches of one fill gave: judgments, and what the online judge still owes."""

    judged: int = 0
    """Games (custom ids) delivered with a batch judgment."""
    online: set[str] = field(default_factory=set)
    """Custom ids for the online judge (failed, expired, unanswered, or retries owed)."""
    spent: dict[str, Outcome] = field(default_factory=dict)
    """Batch replies sent online anyway (no readable verdict, retries owed): their tokens
    were paid at the batch price and belong to the game's record."""
    submitted: list[str] = field(default_factory=list)
    """Batch ids submitted now."""
    polled: list[str] = field(default_factory=list)
    """Batch ids recorded by an earlier run and polled now."""


Deliver = Callable[[Mapping[str, Outcome]], None]
"""Stores batch judgments (custom id -> outcome) durably before the batch is marked done."""
Sleep = Callable[[float], None]


class BatchRunner:
    """Submits, polls and reads the batches of one judge in one run.

    Args:
        config: the judge (``mode`` ``batch``).
        run_path: the run directory (``BATCHES`` is written there).
        progress: the stage's bar (advanced as the provider reports completed requests).
        client: an ``openai.OpenAI`` (made from the config and the key when omitted).
        sleep: how to wait between polls (tests pass a recorder or raise from it).
    """

    def __init__(self, config: JudgeConfig, run_path: Path, *, progress: Progress | None = None,
                 client: Any = None, sleep: Sleep | None = None) -> None:
        self.config = config
        self.log = JsonlLog(run_path / BATCHES, BatchRecord)
        self.progress = progress or SilentProgress()
        self._client = client
        self._own_client = client is None
        self._sleep = sleep or time.sleep
        self._shown: dict[str, int] = {}

    @property
    def client(self) -> Any:
        """The synchronous OpenAI client (made on first use: no key needed when all is
        on disk)."""
        if self._client is None:
            try:
                import openai
            except ImportError:  # pragma: no cover - openai is a core dependency
                raise MissingExtraError("openai", "openai", "batch judging") from None
            self._client = openai.OpenAI(
                base_url=strip_userinfo(self.config.base_url), api_key=api_key_for(self.config),
                max_retries=self.config.retries, timeout=self.config.timeout_s)
        return self._client

    def records(self) -> list[BatchRecord]:
        """The current state of every submission recorded in the run (last record wins)."""
        latest: dict[str, BatchRecord] = {}
        for record in self.log.read():
            latest[record.key] = record
        return list(latest.values())

    def run(self, games: Mapping[str, GameText], deliver: Deliver) -> BatchOutcome:
        """Bring ``games`` (custom id -> game) through batches: resume the recorded ones
        covering them, submit the rest, poll, deliver judgments as each batch ends.

        Raises:
            UserError: the provider has no Batch API or refuses the key.
            JudgeError: the provider stopped answering while polling (the batch is recorded;
                a rerun resumes polling it).
        """
        wanted = dict(games)
        result = BatchOutcome()
        try:
            pending = [r for r in self.records()
                       if not r.done and set(r.custom_ids) & set(wanted)]
            covered = {c for r in pending for c in r.custom_ids}
            result.polled = [r.batch_id for r in pending if r.batch_id]
            fresh = {c: g for c, g in wanted.items() if c not in covered}
            resumed = [self._submitted(r, result, look_up=True) for r in pending]
            pending = resumed + [self._submitted(self._upload(chunk), result, look_up=False)
                                 for chunk in _chunks(self.config, fresh)]
            self._poll(pending, wanted, deliver, result)
        finally:
            self.log.close()
            if self._own_client and self._client is not None:
                self._client.close()
                self._client = None
        self.progress.note("")
        return result

    # -- submission ------------------------------------------------------------------------

    def _upload(self, chunk: dict[str, bytes]) -> BatchRecord:
        data = b"".join(chunk.values())
        token = secrets.token_hex(8)
        with self._calling("upload the batch file"):
            uploaded = self.client.with_options(timeout=UPLOAD_TIMEOUT_S).files.create(
                file=(f"evalharness-{self.config.name}-{token}.jsonl", data,
                      "application/jsonl"), purpose="batch")
        now = utc_now()
        return self._save(BatchRecord(
            key=token, judge=self.config.name, fingerprint=self.config.fingerprint,
            custom_ids=list(chunk), input_file_id=str(uploaded.id), created=now, updated=now))

    def _submitted(self, record: BatchRecord, result: BatchOutcome, *, look_up: bool
                   ) -> BatchRecord:
        """The record with its batch id: submitted now, or (``look_up``: a record an
        earlier run left without an id) found among the provider's batches, as a run killed
        between submitting and recording leaves it."""
        if record.batch_id is not None:
            return record
        batch_id = self._find(record.key) if look_up else None
        if batch_id is None:
            with self._calling("submit the batch"):
                batch = self.client.batches.create(
                    input_file_id=record.input_file_id, endpoint=ENDPOINT,
                    completion_window=self.config.batch_window,
                    metadata={TOKEN_KEY: record.key, "judge": self.config.name[:500]})
            batch_id = str(batch.id)
            result.submitted.append(batch_id)
        else:
            result.polled.append(batch_id)
        return self._save(record.model_copy(update={"batch_id": batch_id,
                                                    "status": "submitted"}))

    def _find(self, token: str) -> str | None:
        with self._calling("list batches"):
            for seen, batch in enumerate(self.client.batches.list(limit=LOOKUP_LIMIT)):
                if (batch.metadata or {}).get(TOKEN_KEY) == token:
                    return str(batch.id)
                if seen + 1 >= LOOKUP_LIMIT:
                    break
        return None

    # -- polling ---------------------------------------------------------------------------

    def _poll(self, pending: Sequence[BatchRecord], wanted: Mapping[str, GameText],
              deliver: Deliver, result: BatchOutcome) -> None:
        open_batches = list(pending)
        given: set[str] = set()
        while open_batches:
            still: list[BatchRecord] = []
            for record in open_batches:
                with self._calling("poll the batch"):
                    batch = self.client.batches.retrieve(record.batch_id)
                status = str(batch.status)
                mine = [c for c in record.custom_ids if c in wanted]
                counts = batch.request_counts
                done_now = int(counts.completed) if counts is not None else 0
                self._advance(record, min(done_now, len(mine)))
                if status not in FINAL:
                    still.append(record)
                    self.progress.note(
                        f"batch {batch.id}: {status}, {done_now}/{len(record.custom_ids)} "
                        f"answered; polling every {self.config.batch_poll_s:g} s (a killed "
                        "run resumes polling this batch, nothing is paid twice)")
                    continue
                self._finish(record, batch, status, mine, wanted, given, deliver, result)
            open_batches = still
            if open_batches:
                self._sleep(self.config.batch_poll_s)
        result.online -= given  # a game two recorded batches covered: judged once is enough

    def _finish(self, record: BatchRecord, batch: Any, status: str, mine: Sequence[str],
                wanted: Mapping[str, GameText], given: set[str], deliver: Deliver,
                result: BatchOutcome) -> None:
        """Read a finished batch's files, deliver its judgments, send the rest online."""
        lines: list[Any] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                lines += self._download(str(file_id))
        judged: dict[str, Outcome] = {}
        for line in lines:
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(custom_id, str) or custom_id not in wanted \
                    or custom_id in given or custom_id in judged:
                continue
            outcome = self._outcome_of(line)
            if outcome is None:
                continue
            if outcome.winner is None and self.config.invalid_retries > 0:
                result.spent[custom_id] = outcome  # the online judge owes its retries
                continue
            judged[custom_id] = outcome
        if judged:
            deliver(judged)
        given.update(judged)
        result.judged += len(judged)
        result.online.update(c for c in mine if c not in given)
        self._advance(record, len(judged))
        if status != "completed" or len(judged) < len(mine):
            why = _why(batch, status)
            self.progress.note(f"batch {batch.id} {status}: {len(mine) - len(judged)} "
                               f"game(s) go to the online judge{why}")
        self._save(record.model_copy(update={"status": status, "done": True}))

    def _outcome_of(self, line: Mapping[str, Any]) -> Outcome | None:
        """A result line's outcome; ``None`` for a failed or unreadable item (online)."""
        response = line.get("response")
        if not isinstance(response, dict) or response.get("status_code") != 200:
            return None
        try:
            return outcome_from_completion(self.config, response.get("body"))
        except ValueError:
            return None

    def _download(self, file_id: str) -> list[Any]:
        with self._calling("download the batch results"):
            text = self.client.files.content(file_id).text
        rows: list[Any] = []
        for raw in str(text).splitlines():
            if raw.strip():
                try:
                    rows.append(json.loads(raw))
                except json.JSONDecodeError:
                    continue  # an unreadable line: its game goes online
        return rows

    # -- bookkeeping -----------------------------------------------------------------------

    def _advance(self, record: BatchRecord, done: int) -> None:
        """Move the bar to ``done`` of this batch's games (never back)."""
        shown = self._shown.get(record.key, 0)
        if done > shown:
            self.progress.advance(done - shown)
            self._shown[record.key] = done

    def _save(self, record: BatchRecord) -> BatchRecord:
        stamped = record.model_copy(update={"updated": utc_now()})
        self.log.append(stamped)
        self.log.checkpoint()  # the id must be on disk before anything else is paid for
        return stamped

    def _calling(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _calling(self.config, what)


@contextlib.contextmanager
def _calling(config: JudgeConfig, what: str) -> Iterator[None]:
    """Turns the client's errors while doing ``what`` into the harness's errors (a refused
    key or a missing Batch API is the user's to fix; anything else, a rerun resumes)."""
    import openai

    try:
        yield
    except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
        raise UserError(f"{_where(config)} refused the API key when asked to {what} "
                        f"({_message(error)}). Fix: check ${config.api_key_env} and that "
                        "the key may use the Batch API.") from None
    except (openai.NotFoundError, openai.BadRequestError) as error:
        if what not in ("upload the batch file", "submit the batch"):
            raise _resumable(config, what, error) from None
        raise UserError(f"{_where(config)} could not {what} ({_message(error)}): the "
                        "endpoint may have no Batch API (a vLLM server has none). Fix: judge "
                        "online (--judge-mode online), or point --judge-url at a provider "
                        "with a Batch API.") from None
    except openai.OpenAIError as error:
        raise _resumable(config, what, error) from None


def _where(config: JudgeConfig) -> str:
    return f"judge '{config.name}' at {config.shown_url}"


def _message(error: BaseException) -> str:
    return redact_text(str(getattr(error, "message", "") or error))[:300]


def _resumable(config: JudgeConfig, what: str, error: BaseException) -> JudgeError:
    return JudgeError(f"{_where(config)}: could not {what} ({_message(error)}). Every batch "
                      f"submitted is recorded in {BATCHES}; rerun the command to resume "
                      "polling it (nothing is submitted or paid twice).")


def _chunks(config: JudgeConfig, games: Mapping[str, GameText]) -> Iterator[dict[str, bytes]]:
    """The games' lines in files within the API's limits (count and bytes)."""
    chunk: dict[str, bytes] = {}
    size = 0
    for custom_id, line in zip(games, batch_lines(config, games), strict=True):
        if chunk and (len(chunk) >= MAX_LINES or size + len(line) > MAX_BYTES):
            yield chunk
            chunk, size = {}, 0
        chunk[custom_id] = line
        size += len(line)
    if chunk:
        yield chunk


def _why(batch: Any, status: str) -> str:
    """The provider's reason a batch ended badly, when it gives one."""
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    first = next((getattr(e, "message", None) for e in errors if getattr(e, "message", None)),
                 None)
    if first:
        return f" ({redact_text(str(first))[:200]})"
    return "" if status == "completed" else " (failed or expired items)"
