"""Load and validate judge definitions: ``judges/<name>/config.yaml`` + template files.

Every problem in a judge folder is collected and reported at once, each with ``file:line``.
The judge's *fingerprint* hashes exactly what changes its verdicts (model, sampling settings,
templates, verdict patterns, log-prob settings, reference metric); concurrency, retries,
timeouts, prices, the endpoint URL and the API key variable are not in it, so moving a judge
to another server or raising its concurrency keeps every judgment already made.

Prices belong to an endpoint, not to a judge: the shipped judges carry a hosted API's prices,
and a judge pointed elsewhere (``--judge-url``: a local vLLM, another provider) costs 0
unless priced with ``--judge-price IN,OUT``. ``JudgeConfig.price_source`` says which.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from evalharness.errors import UserError
from evalharness.judging.prices import PRICE_FLAG, Price, same_endpoint
from evalharness.judging.templates import REQUIRED, placeholder_problems, used_placeholders
from evalharness.judging.verdicts import LogprobTokens, VerdictRule, parse_verdict
from evalharness.keys import content_key
from evalharness.redact import redact_text, strip_userinfo
from evalharness.resources import shipped_dir

CONFIG = "config.yaml"
JUDGES_ENV = "EVALHARNESS_JUDGES"
KINDS = ("llm", "reference")
METRICS = ("token_f1", "rouge_l")
WINNERS = ("A", "B", "tie")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = {"description", "kind", "model", "base_url", "api_key_env", "temperature",
             "max_tokens", "concurrency", "timeout_s", "retries", "invalid_retries",
             "retry_temperature", "backoff", "price_per_1k", "templates", "verdicts",
             "logprobs", "examples", "metric", "tie_margin", "rate_limits", "mode", "batch",
             "backend"}
DEFAULT_RETRY_TEMPERATURE = 0.7
_NESTED_KEYS = {"backoff": {"initial_s", "max_s"}, "price_per_1k": {"input", "output"},
                "templates": {"system", "user"}, "logprobs": {"top_logprobs", "tokens", "position"},
                "rate_limits": {"requests_per_minute", "tokens_per_minute"},
                "batch": {"discount", "poll_s", "completion_window"}}
MODES = ("online", "batch")
BACKENDS = ("http", "vllm")
LOCAL_BATCH = 256
"""Games per engine call of the local judge by default (its concurrency). Judgments are
written when their batch ends, so a killed run loses at most one batch; vLLM schedules the
batch itself (``max_num_seqs`` at a time), so a larger one buys little once it is full."""
LOCAL_PRICE_SOURCE = "local vLLM engine: 0"


@dataclass(frozen=True)
class JudgeConfig:
    """A validated judge definition (see docs/judging.md for every field)."""

    name: str
    """The folder's name."""
    folder: Path
    """Where the definition lives."""
    kind: Literal["llm", "reference"] = "llm"
    description: str = ""
    model: str = ""
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    """Name of the environment variable holding the key (never the key); ``None``: no key."""
    temperature: float = 0.0
    max_tokens: int = 512
    concurrency: int = 8
    timeout_s: float = 60.0
    retries: int = 6
    """Retries of a call that failed in transit (429, 5xx, timeout, dropped connection)."""
    invalid_retries: int = 2
    """Extra calls when the verdict cannot be read; then the judgment is stored invalid."""
    retry_temperature: float | None = DEFAULT_RETRY_TEMPERATURE
    """Lowest temperature of those extra calls (``None``: the judge's own). A greedy judge
    asked the same thing gives the same unreadable reply; every retry also shows new fence
    ids (``llm.retry_plan``). Not in the fingerprint, like ``invalid_retries``."""
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    price_input_per_1k: float = 0.0
    price_output_per_1k: float = 0.0
    price_source: str = "config"
    """Where the prices came from, for the cost table: ``config <name>``, ``--judge-price``,
    or an unpriced endpoint (0). Prices change no verdict: not in the fingerprint."""
    fence_salt: str = ""
    """Mixed into every fence id (the noise floor's repeats show the judge new ids); not in
    the fingerprint: a repeat's key carries its number instead."""
    seed: int | None = None
    """Sent as the request's ``seed`` when set (a sampling judge's repeats); not in the
    fingerprint, for the same reason as ``fence_salt``."""
    requests_per_minute: int | None = None
    """``rate_limits.requests_per_minute``: the client paces its calls to this budget
    (``None``: no budget of its own; it still adapts to 429s and rate-limit headers)."""
    tokens_per_minute: int | None = None
    """``rate_limits.tokens_per_minute``: the token budget the client paces itself to."""
    mode: Literal["online", "batch"] = "online"
    """``online``: one call per game; ``batch``: the provider's Batch API (``--judge-mode``)."""
    batch_discount: float = 0.5
    """``batch.discount``: the price factor of batch calls (hosted Batch APIs charge half)."""
    batch_poll_s: float = 10.0
    """``batch.poll_s``: seconds between polls of a submitted batch."""
    batch_window: str = "24h"
    """``batch.completion_window``: the window the batch is submitted with."""
    backend: Literal["http", "vllm"] = "http"
    """``http``: an OpenAI-compatible endpoint; ``vllm``: vLLM's offline engine in this
    process, ``model`` being a local folder or hub name (``--judge-backend vllm``)."""
    system_template: str | None = None
    user_template: str = ""
    verdicts: tuple[VerdictRule, ...] = ()
    logprob_tokens: LogprobTokens | None = None
    top_logprobs: int = 5
    metric: Literal["token_f1", "rouge_l"] = "token_f1"
    tie_margin: float = 0.02
    examples: tuple[tuple[str, str | None], ...] = field(default=(), repr=False)

    @property
    def shown_url(self) -> str:
        """``base_url`` as messages show it: credentials taken out (they are never sent)."""
        return redact_text(strip_userinfo(self.base_url))

    @property
    def uses_reference(self) -> bool:
        """Whether verdicts depend on the prompt's reference answer."""
        return self.kind == "reference" or "reference" in used_placeholders(
            self.system_template, self.user_template)

    @property
    def fingerprint(self) -> str:
        """Hash of everything that changes this judge's verdicts (part of judgment keys)."""
        if self.kind == "reference":
            return content_key({"kind": "reference", "metric": self.metric,
                                "tie_margin": self.tie_margin})
        tokens = self.logprob_tokens
        logprobs: dict[str, Any] | None = None if tokens is None else {
            "a": sorted(tokens.a), "b": sorted(tokens.b), "tie": sorted(tokens.tie),
            "top": self.top_logprobs}
        if tokens is not None and tokens.position is not None:
            # Only when set: judges without it keep the keys of the judgments they made.
            logprobs = {**(logprobs or {}), "position": tokens.position}
        return content_key({
            "kind": "llm", "model": self.model, "temperature": self.temperature,
            "max_tokens": self.max_tokens, "system": self.system_template,
            "user": self.user_template,
            "verdicts": [[r.label, r.winner, r.pattern.pattern] for r in self.verdicts],
            "logprobs": logprobs,
        })

    def with_overrides(self, *, model: str | None = None, base_url: str | None = None,
                       concurrency: int | None = None, price: Price | None = None,
                       mode: str | None = None, backend: str | None = None) -> JudgeConfig:
        """A copy pointed at another model or endpoint, run at another concurrency, priced,
        judging through the Batch API (``mode``) or in this process (``backend``).

        An endpoint other than the config's own (``same_endpoint``) is unpriced, 0, unless
        ``price`` is given: the config's prices are a hosted API's, and charging a local
        server's tokens at them would report a cost nobody pays. So is a local engine.
        """
        changes: dict[str, Any] = {}
        if mode is not None:
            if mode not in MODES:
                raise UserError(f"--judge-mode {mode!r} is not a mode. Fix: use "
                                f"{' or '.join(MODES)}.")
            changes["mode"] = mode
        if backend is not None:
            if backend not in BACKENDS:
                raise UserError(f"--judge-backend {backend!r} is not a backend. Fix: use "
                                f"{' or '.join(BACKENDS)}.")
            changes["backend"] = backend
            if backend == "vllm":
                # One batched engine call, not a hosted API's 8 or 16 calls in flight.
                if concurrency is None:
                    changes["concurrency"] = max(self.concurrency, LOCAL_BATCH)
                if price is None:
                    changes.update(price_input_per_1k=0.0, price_output_per_1k=0.0,
                                   price_source=LOCAL_PRICE_SOURCE)
        if model:
            changes["model"] = model
        if base_url:
            changes["base_url"] = base_url
            if not same_endpoint(base_url, self.base_url) and (
                    self.price_input_per_1k or self.price_output_per_1k):
                shown = redact_text(strip_userinfo(base_url))
                changes.update(price_input_per_1k=0.0, price_output_per_1k=0.0,
                               price_source=f"unpriced endpoint {shown}: 0 ({PRICE_FLAG} "
                               "IN,OUT prices it)")
        if concurrency is not None:
            if concurrency < 1:
                raise UserError(f"--concurrency must be at least 1, not {concurrency}")
            changes["concurrency"] = concurrency
        if price is not None:
            changes.update(price_input_per_1k=price.input_per_1k,
                           price_output_per_1k=price.output_per_1k, price_source=PRICE_FLAG)
        return replace(self, **changes)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Estimated USD cost of the given tokens at this judge's prices."""
        return (prompt_tokens * self.price_input_per_1k
                + completion_tokens * self.price_output_per_1k) / 1000.0


def default_judges_root() -> Path:
    """The judges that ship with evalharness (the checkout's ``judges/`` in a source tree)."""
    return shipped_dir("judges")


def judges_root(given: Path | None = None) -> Path:
    """Where judges are looked up: ``given``, else ``$EVALHARNESS_JUDGES``, else the default."""
    if given is not None:
        return given
    from_env = os.environ.get(JUDGES_ENV)
    return Path(from_env) if from_env else default_judges_root()


def available_judges(root: Path) -> list[str]:
    """Names of the folders under ``root`` holding a ``config.yaml``, sorted."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CONFIG).is_file())


def price_line(judge: JudgeConfig) -> str:
    """Where ``judge``'s prices came from, and the batch factor when batch mode applies it
    (the cost line and the report's cost table show this)."""
    if judge.mode != "batch":
        return judge.price_source
    return f"{judge.price_source}; batch x{judge.batch_discount:g}"


def resolve_judge(name: str | Path, root: Path | None = None) -> JudgeConfig:
    """Load a judge by name (a folder under the judges root) or by folder path.

    Raises:
        UserError: unknown judge (listing the available ones) or an invalid definition.
    """
    root = judges_root(root)
    given = Path(name)
    if given.name == CONFIG and given.is_file():
        given = given.parent
    candidates = [given] if (given / CONFIG).is_file() else []
    if not candidates and (root / str(name) / CONFIG).is_file():
        candidates = [root / str(name)]
    if not candidates:
        found = available_judges(root)
        listing = ", ".join(found) if found else "none"
        raise UserError(
            f"unknown judge '{name}' (judges in {root}: {listing}). Fix: pass one of those to "
            f"--judge, a folder holding {CONFIG}, or --judges-dir / ${JUDGES_ENV} pointing at "
            "your judges; `evalharness judges` lists them."
        )
    return load_judge(candidates[0])


def load_judge(folder: Path) -> JudgeConfig:
    """Load and validate one judge folder.

    Raises:
        UserError: listing every problem found, each with ``file:line``.
    """
    config, problems = check_judge(folder)
    if config is None or problems:
        raise UserError(
            f"invalid judge {folder} ({len(problems)} problem(s)):\n  " + "\n  ".join(problems)
            + "\nFix: correct the lines named above; docs/judging.md describes every field."
        )
    return config


def check_judge(folder: Path) -> tuple[JudgeConfig | None, list[str]]:
    """Validate a judge folder; returns the config (when it could be built) and all problems."""
    path = folder / CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{path}: cannot read ({exc.strerror})"]
    try:
        data, lines = _yaml_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        return None, [f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]
    if not isinstance(data, dict):
        return None, [f"{path}:1: expected a mapping of settings"]
    reader = _Reader(path, data, lines)
    config = reader.build(folder)
    return config, reader.problems


class _Reader:
    """Reads fields out of the YAML mapping, collecting problems with their lines."""

    def __init__(self, path: Path, data: dict[str, Any], lines: Mapping[tuple[Any, ...], int]):
        self.path = path
        self.data = data
        self.lines = lines
        self.problems: list[str] = []

    def where(self, *keys: Any) -> str:
        for end in range(len(keys), -1, -1):
            if keys[:end] in self.lines:
                return f"{self.path}:{self.lines[keys[:end]]}"
        return str(self.path)

    def problem(self, keys: tuple[Any, ...], message: str) -> None:
        self.problems.append(f"{self.where(*keys)}: {message}")

    def get(self, keys: tuple[Any, ...], kind: type | tuple[type, ...], default: Any,
            check: tuple[str, Any] | None = None) -> Any:
        value: Any = self.data
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(
                k.__name__ for k in kind)
            self.problem(keys, f"'{'.'.join(map(str, keys))}' must be {names}, not {value!r}")
            return default
        if check is not None and not check[1](value):
            self.problem(keys, f"'{'.'.join(map(str, keys))}' {check[0]}, not {value!r}")
            return default
        return value

    def build(self, folder: Path) -> JudgeConfig | None:
        for key in self.data:
            if key not in _TOP_KEYS:
                known = ", ".join(sorted(_TOP_KEYS))
                self.problem((key,), f"unknown setting '{key}' (known: {known})")
        for key, allowed in _NESTED_KEYS.items():
            nested = self.data.get(key)
            if isinstance(nested, dict):
                for sub in nested:
                    if sub not in allowed:
                        self.problem((key, sub), f"unknown setting '{key}.{sub}' "
                                     f"(known: {', '.join(sorted(allowed))})")
            elif nested is not None:
                self.problem((key,), f"'{key}' must be a mapping")
        kind = self.get(("kind",), str, "llm", ("must be llm or reference", KINDS.__contains__))
        common: dict[str, Any] = {
            "name": folder.name, "folder": folder, "kind": kind,
            "description": self.get(("description",), str, ""),
        }
        if kind == "reference":
            return self._reference(common)
        return self._llm(common, folder)

    def _reference(self, common: dict[str, Any]) -> JudgeConfig:
        for key in ("model", "templates", "verdicts", "logprobs"):
            if key in self.data:
                self.problem((key,), f"'{key}' has no meaning for a reference judge; remove it")
        return JudgeConfig(
            **common, price_source="offline judge: 0",
            metric=self.get(("metric",), str, "token_f1",
                            (f"must be one of {', '.join(METRICS)}", METRICS.__contains__)),
            tie_margin=self.get(("tie_margin",), float, 0.02,
                                ("must be in [0, 1)", lambda v: 0.0 <= v < 1.0)),
        )

    def _llm(self, common: dict[str, Any], folder: Path) -> JudgeConfig:
        positive = ("must be > 0", lambda v: v > 0)
        at_least_0 = ("must be >= 0", lambda v: v >= 0)
        model = self.get(("model",), str, "")
        if not model.strip():
            self.problem(("model",), "'model' is required: the model name the endpoint serves")
        api_key_env = self._api_key_env()
        system = self._template(folder, "system", required=False)
        user = self._template(folder, "user", required=True)
        missing = [n for n in REQUIRED if n not in used_placeholders(system, user)]
        if missing and user is not None:
            self.problem(("templates",), "the templates never show "
                         + ", ".join("{" + n + "}" for n in missing)
                         + "; the judge must see the question and both answers")
        verdicts = self._verdicts()
        tokens, top = self._logprobs()
        config = JudgeConfig(
            **common, model=model,
            base_url=self.get(("base_url",), str, JudgeConfig.base_url,
                              ("must start with http:// or https://",
                               lambda v: v.startswith(("http://", "https://")))),
            api_key_env=api_key_env,
            temperature=self.get(("temperature",), float, 0.0, at_least_0),
            max_tokens=self.get(("max_tokens",), int, 512, positive),
            concurrency=self.get(("concurrency",), int, 8, positive),
            timeout_s=self.get(("timeout_s",), float, 60.0, positive),
            retries=self.get(("retries",), int, 6, at_least_0),
            invalid_retries=self.get(("invalid_retries",), int, 2, at_least_0),
            retry_temperature=None if "retry_temperature" in self.data and self.data[
                "retry_temperature"] is None else self.get(
                    ("retry_temperature",), float, DEFAULT_RETRY_TEMPERATURE, at_least_0),
            backoff_initial_s=self.get(("backoff", "initial_s"), float, 1.0, at_least_0),
            backoff_max_s=self.get(("backoff", "max_s"), float, 60.0, at_least_0),
            price_input_per_1k=self.get(("price_per_1k", "input"), float, 0.0, at_least_0),
            price_output_per_1k=self.get(("price_per_1k", "output"), float, 0.0, at_least_0),
            price_source=(f"config {folder.name}" if "price_per_1k" in self.data
                          else f"config {folder.name}: no price_per_1k (0)"),
            system_template=system, user_template=user or "", verdicts=verdicts,
            logprob_tokens=tokens, top_logprobs=top,
            requests_per_minute=self.get(("rate_limits", "requests_per_minute"), int, None,
                                         positive),
            tokens_per_minute=self.get(("rate_limits", "tokens_per_minute"), int, None,
                                       positive),
            mode=self.get(("mode",), str, "online",
                          (f"must be one of {', '.join(MODES)}", MODES.__contains__)),
            batch_discount=self.get(("batch", "discount"), float, 0.5,
                                    ("must be in (0, 1]", lambda v: 0.0 < v <= 1.0)),
            batch_poll_s=self.get(("batch", "poll_s"), float, 10.0, positive),
            batch_window=self.get(("batch", "completion_window"), str, "24h"),
            backend=self.get(("backend",), str, "http",
                             (f"must be one of {', '.join(BACKENDS)}", BACKENDS.__contains__)),
        )
        if tokens is not None and tokens.position is not None \
                and tokens.position >= config.max_tokens:
            self.problem(("logprobs", "position"), f"'logprobs.position' {tokens.position} is "
                         f"never generated: max_tokens is {config.max_tokens} (positions count "
                         "from 0)")
        self._check_examples(config)
        if config.backend == "vllm":
            # A local engine: one batched call of everything pending, and no hosted prices.
            config = replace(config, concurrency=max(config.concurrency, LOCAL_BATCH),
                             price_input_per_1k=0.0, price_output_per_1k=0.0,
                             price_source=LOCAL_PRICE_SOURCE)
        return config

    def _api_key_env(self) -> str | None:
        if "api_key_env" in self.data and self.data["api_key_env"] is None:
            return None  # a local server that needs no key
        value: str = self.get(("api_key_env",), str, "OPENAI_API_KEY")
        if not _ENV_NAME.match(value) or len(value) > 40:
            # Never echo the value: it may be a key pasted in the wrong place.
            self.problem(("api_key_env",), "'api_key_env' must be the NAME of an environment "
                         "variable (like OPENAI_API_KEY), never the key itself")
            return "OPENAI_API_KEY"
        return value

    def _template(self, folder: Path, slot: str, *, required: bool) -> str | None:
        name: str | None = self.get(("templates", slot), str, None)
        if name is None:
            if required:
                self.problem(("templates",), f"'templates.{slot}' is required: a file in "
                             f"{folder} holding the {slot} message")
            return None
        path = folder / name
        if not path.is_file():
            self.problem(("templates", slot), f"template file '{name}' not found in {folder}")
            return None
        text = path.read_text(encoding="utf-8")
        self.problems.extend(placeholder_problems(text, str(path)))
        return text

    def _verdicts(self) -> tuple[VerdictRule, ...]:
        raw = self.data.get("verdicts")
        if not isinstance(raw, list) or not raw:
            self.problem(("verdicts",), "'verdicts' must be a list of {label, winner, pattern}")
            return ()
        out: list[VerdictRule] = []
        for index, item in enumerate(raw):
            keys = ("verdicts", index)
            if not isinstance(item, dict) or set(item) != {"label", "winner", "pattern"}:
                self.problem(keys, f"verdicts[{index}] needs exactly label, winner and pattern")
                continue
            label, winner, pattern = item["label"], item["winner"], item["pattern"]
            if not isinstance(label, str) or not label:
                self.problem(keys, f"verdicts[{index}].label must be text")
                continue
            if winner not in WINNERS:
                self.problem((*keys, "winner"), f"verdicts[{index}].winner must be A, B or "
                             f"tie, not {winner!r}")
                continue
            try:
                with warnings.catch_warnings():  # "possible nested set": the error says more
                    warnings.simplefilter("ignore", FutureWarning)
                    compiled = re.compile(str(pattern))
            except re.error as exc:
                self.problem((*keys, "pattern"), f"verdicts[{index}].pattern is not a valid "
                             f"regular expression ({exc})")
                continue
            if any(rule.label == label for rule in out):
                self.problem(keys, f"verdicts[{index}]: label '{label}' appears twice")
                continue
            out.append(VerdictRule(label, winner, compiled))
        if out and not {"A", "B"} <= {rule.winner for rule in out}:
            self.problem(("verdicts",), "the scale needs at least one label for A and one for B")
        return tuple(out)

    def _logprobs(self) -> tuple[LogprobTokens | None, int]:
        raw = self.data.get("logprobs")
        if raw is None:
            return None, 5
        top = self.get(("logprobs", "top_logprobs"), int, 5,
                       ("must be between 1 and 20", lambda v: 1 <= v <= 20))
        position: int | None = self.get(
            ("logprobs", "position"), int, None,
            ("must be a whole number from 0 (the first generated token)", lambda v: v >= 0))
        tokens = raw.get("tokens") if isinstance(raw, dict) else None
        if not isinstance(tokens, dict) or not {"A", "B"} <= set(tokens) or not set(
                tokens) <= set(WINNERS):
            self.problem(("logprobs", "tokens"), "'logprobs.tokens' must map A, B (and "
                         "optionally tie) to lists of verdict tokens")
            return None, top
        lists: dict[str, list[str]] = {}
        for side, values in tokens.items():
            if not isinstance(values, list) or not values or not all(
                    isinstance(v, str) and v.strip() for v in values):
                self.problem(("logprobs", "tokens", side), f"'logprobs.tokens.{side}' must be "
                             "a non-empty list of non-blank strings")
                return None, top
            lists[side] = values
        shared = sorted({v.strip() for v in lists["A"]} & {v.strip() for v in lists["B"]})
        if shared:  # one token voting for both sides would always be read as A
            self.problem(("logprobs", "tokens"), "'logprobs.tokens' lists "
                         f"{', '.join(repr(t) for t in shared)} for both A and B (tokens are "
                         "compared after stripping spaces; case counts, so m and M differ)")
            return None, top
        return LogprobTokens.of(lists["A"], lists["B"], lists.get("tie", []), position), top

    def _check_examples(self, config: JudgeConfig) -> None:
        raw = self.data.get("examples", [])
        if not isinstance(raw, list):
            self.problem(("examples",), "'examples' must be a list of {text, label}")
            return
        labels = {rule.label for rule in config.verdicts}
        for index, item in enumerate(raw):
            keys = ("examples", index)
            if not isinstance(item, dict) or set(item) != {"text", "label"}:
                self.problem(keys, f"examples[{index}] needs exactly text and label "
                             "(label null for a text that must not parse)")
                continue
            expected = item["label"]
            if expected is not None and expected not in labels:
                self.problem(keys, f"examples[{index}].label '{expected}' is not on the scale")
                continue
            if config.verdicts:
                got = parse_verdict(str(item["text"]), config.verdicts)
                if got.label != expected:
                    self.problem(keys, f"examples[{index}]: the patterns read "
                                 f"{got.label or 'no verdict'} ({got.error or 'valid'}), "
                                 f"expected {expected or 'no verdict'}")


def _yaml_with_lines(text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The parsed YAML and the 1-based line of every mapping key and list item in it."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    data = yaml.safe_load(text)
    lines: dict[tuple[Any, ...], int] = {}

    def walk(current: yaml.Node | None, keys: tuple[Any, ...]) -> None:
        if current is None:
            return
        lines.setdefault(keys, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                child = (*keys, key_node.value)
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                walk(item, (*keys, index))

    walk(node, ())
    return data, lines


def check_all(root: Path) -> dict[str, list[str]]:
    """Problems per judge folder under ``root`` (an empty list: the judge is valid)."""
    return {name: check_judge(root / name)[1] for name in available_judges(root)}


def describe(configs: Iterable[JudgeConfig]) -> list[dict[str, str]]:
    """One row per judge for listings: name, kind, model, scale, description."""
    rows = []
    for config in configs:
        scale = (f"reference ({config.metric}, tie within {config.tie_margin:g})"
                 if config.kind == "reference" else " / ".join(r.label for r in config.verdicts))
        if config.logprob_tokens is not None:
            position = config.logprob_tokens.position
            scale += " + logprobs" + ("" if position is None else f" at token {position}")
        rows.append({"name": config.name, "kind": config.kind, "model": config.model or "-",
                     "scale": scale, "description": config.description})
    return rows
