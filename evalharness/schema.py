"""Every record that touches disk, as pydantic models.

A run directory holds these records as JSON lines (one record per line, appended as each unit
of work finishes) plus one ``manifest.json``. The field docstrings are the documentation of
the on-disk format; the README's "Run directory" section points here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from evalharness.keys import content_key
from evalharness.redact import redact_argv

SCHEMA_VERSION = 1
"""Bumped whenever a record changes shape; readers refuse newer versions than they know."""

Role = Literal["system", "user", "assistant"]
Winner = Literal["A", "B", "tie"]
RunStatus = Literal["running", "complete", "failed", "interrupted"]
# Checked on every construction and read: no manifest can be written with a password or key
# in its command line, whichever code path built it, and an old one is shown masked.
Argv = Annotated[tuple[str, ...], AfterValidator(redact_argv)]


class Record(BaseModel):
    """Base of all records: immutable, and unknown fields are an error (typos surface)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class KeyedRecord(Record):
    """A record of an append-only log: its ``key`` says which unit of work it finished."""

    key: str
    """Content key (see ``evalharness.keys``)."""


class Message(Record):
    """One chat turn."""

    role: Role
    """Who speaks: ``system``, ``user`` or ``assistant``."""
    content: str
    """The text of the turn."""


class Prompt(Record):
    """One prompt of a prompt set."""

    id: str
    """Unique id within its prompt set; answers and judgments refer to it."""
    messages: tuple[Message, ...]
    """The conversation sent to the model; a plain ``prompt`` becomes one user message."""
    reference: str | None = None
    """A reference answer, used by the reference judge and shown in reports."""
    category: str = "default"
    """A free label for grouping results (reports filter and break down by it)."""


class PromptSet(Record):
    """A validated prompt set and the hash of its content."""

    name: str
    """Short name (the file stem)."""
    source: str
    """Where it was read from (a path or a dataset name)."""
    sha256: str
    """Hash of the canonical JSON of all prompts, in order: equal content, equal hash."""
    prompts: tuple[Prompt, ...]
    """The prompts, in file order."""


class ModelSpec(Record):
    """One thing that answers prompts: the baseline, an adapter, or a merged model.

    Identity is content, not path: ``key`` changes when the base model's fingerprint or the
    adapter's weights change, and only then.
    """

    name: str
    """Display name: ``baseline``, the adapter folder's name, or the model folder's name."""
    kind: Literal["base", "adapter", "merged", "endpoint"]
    """``base``: the base model alone; ``adapter``: base + a PEFT LoRA adapter; ``merged``: a
    full model folder; ``endpoint``: a model served by an OpenAI-compatible endpoint."""
    base_model: str
    """The base model as given (hub id or local folder); for ``merged``, the model folder."""
    base_fingerprint: str
    """Content fingerprint of the base model (see ``candidates.fingerprint_model``)."""
    adapter: str | None = None
    """Absolute path of the adapter folder, for ``kind == "adapter"``."""
    adapter_sha256: str | None = None
    """Hash of the adapter's config and weights files."""
    lora_rank: int | None = None
    """The adapter's LoRA rank ``r``."""
    lora_alpha: float | None = None
    """The adapter's ``lora_alpha``."""
    target_modules: tuple[str, ...] = ()
    """Module names the adapter modifies (from ``adapter_config.json``)."""
    hyperparameters: dict[str, float | int | str] = Field(default_factory=dict)
    """Training hyperparameters found beside the adapter (learning rate, epochs, ...)."""

    @property
    def key(self) -> str:
        """Content identity of the model: what answers and scores are keyed on."""
        return content_key(
            {"base": self.base_fingerprint, "adapter": self.adapter_sha256, "kind": self.kind}
        )


class GenConfig(Record):
    """How answers are generated. Every field changes the output, so all are in the key."""

    max_new_tokens: int = Field(default=256, ge=1)
    """Most tokens generated per answer."""
    temperature: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    """0 means greedy decoding (deterministic); above 0 samples."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    """Nucleus sampling threshold (used only when sampling)."""
    seed: int = Field(default=0, ge=0)
    """Seed for sampling; each prompt gets its own stream derived from it."""
    stop: tuple[str, ...] = ()
    """Strings that end an answer early (not included in the answer)."""
    on_long_prompt: Literal["error", "truncate"] = "error"
    """A prompt longer than the model's context: ``error`` (refused before generation) or
    ``truncate`` (its last tokens are kept, leaving room for ``max_new_tokens``). Written
    only when not ``error``, so the keys of answers made before this field existed hold."""

    @model_serializer(mode="wrap")
    def _without_default_policy(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        # With "error" every answer that exists is to the whole prompt, as before the field.
        if isinstance(data, dict) and data.get("on_long_prompt") == "error":
            del data["on_long_prompt"]
        return data


class Answer(KeyedRecord):
    """One model's answer to one prompt."""

    key: str
    """Content key: model identity + prompt content + generation config."""
    prompt_id: str
    """The prompt answered."""
    model: str
    """Display name of the model that answered."""
    model_key: str
    """Content identity of the model (``ModelSpec.key``)."""
    text: str
    """The answer text, special tokens removed."""
    n_tokens: int
    """Tokens generated."""
    finish_reason: Literal["stop", "length"]
    """``stop``: the model ended the answer; ``length``: cut at ``max_new_tokens``."""
    seconds: float
    """Wall time attributed to this answer (its batch's time divided among its members)."""


class TokenUsage(Record):
    """Tokens a judge call consumed."""

    prompt_tokens: int = 0
    """Input tokens billed."""
    completion_tokens: int = 0
    """Output tokens billed."""


SOFT_MARGIN = 0.25
"""How far past 0.5 a soft preference may lean against the hard winner before the two are a
contradiction (see ``Judgment.contradiction``): 0.25, i.e. 3:1 odds the other way. Milder
disagreement is what a judge that samples its verdict (temperature above 0) writes."""


class Judgment(KeyedRecord):
    """One game: a judge compared answer A with answer B for one prompt, in one order.

    evalharness judges every prompt twice, once with each model in position A; judgments
    made elsewhere may hold one order only (the statistics count and say which). ``first``
    and ``second`` name the models in positions A and B; the judge saw only "A" and "B".
    A game is valid when it has a hard ``winner``, a soft preference ``weight_a``, or both.
    """

    key: str
    """Content key: judge config + template hash, prompt, and the two answers in this order."""
    prompt_id: str
    """The prompt judged."""
    judge: str
    """Name of the judge."""
    first: str
    """Model whose answer was shown as A."""
    second: str
    """Model whose answer was shown as B."""
    verdict: str | None
    """The judge's label on its scale (``A``, ``B``, ``tie``, or ``A>>B`` ... ``B>>A``);
    ``None`` when no valid verdict could be read (see ``error``)."""
    winner: Winner | None = None
    """Which position won (``A``, ``B``) or ``tie``; ``None`` when the judge gave no hard
    verdict: then the game is soft-only when ``weight_a`` is set, else invalid. Invalid
    judgments are never counted as ties."""
    weight_a: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    """Soft preference P(A better) (from the verdict token's log-probs, or a published
    annotator's preference): a probability, so NaN, infinities and anything outside [0, 1]
    are refused."""
    first_length: int | None = Field(default=None, ge=0)
    """Length of answer A in characters (for length diagnostics and length control)."""
    second_length: int | None = Field(default=None, ge=0)
    """Length of answer B in characters."""
    category: str = "default"
    """The prompt's category."""
    raw: str = ""
    """The judge's raw output (kept for audit; invalid verdicts keep their text here)."""
    usage: TokenUsage = Field(default_factory=TokenUsage)
    """Judge tokens consumed, all attempts included."""
    cost_usd: float = 0.0
    """Estimated cost from the judge's configured prices."""
    attempts: int = 1
    """Calls made for this judgment (retries included)."""
    error: str | None = None
    """Why the judgment is invalid, when it is."""
    neutralised: int | None = None
    """Invisible or direction-control characters (zero-width, bidi overrides) in the
    question, answers or reference that the judge was shown as visible ``<U+XXXX>`` escapes
    instead; ``None`` when there were none (or the judge reads no text: the reference judge
    compares words)."""

    @model_validator(mode="after")
    def _a_game_of_two_models(self) -> Judgment:
        """A game has a prompt and two different, named models: a model judged against
        itself (or a blank name) would count its own wins and losses in every statistic."""
        for name in ("prompt_id", "first", "second"):
            if not getattr(self, name).strip():
                raise PydanticCustomError("blank_name", "'{field}' is empty", {"field": name})
        if self.first == self.second:
            raise PydanticCustomError(
                "same_model",
                "model '{model}' is judged against itself (first and second are the same)",
                {"model": self.first},
            )
        return self

    @property
    def valid(self) -> bool:
        """Whether the game counts: it has a hard winner or a soft preference."""
        return self.winner is not None or self.weight_a is not None

    def contradiction(self) -> str | None:
        """Why ``winner`` and ``weight_a`` contradict each other, or ``None``.

        A side's win contradicts a soft preference that gives the other side more than
        ``0.5 + SOFT_MARGIN`` (3:1 odds). A greedy judge never writes one (its sampled
        token is the most likely, so ``A`` comes with ``weight_a >= 0.5``); a tie goes with
        any preference (the tie token's mass counts half to each side).

        >>> j = Judgment(key="k", prompt_id="p", judge="j", first="a", second="b",
        ...              verdict="B", winner="B", weight_a=0.99)
        >>> j.contradiction()
        'winner is "B" but weight_a 0.99 says P(A better) is above 0.75'
        >>> j.model_copy(update={"weight_a": 0.7}).contradiction() is None
        True
        """
        if self.weight_a is None or self.winner in (None, "tie"):
            return None
        if self.winner == "B" and self.weight_a > 0.5 + SOFT_MARGIN:
            return (f'winner is "B" but weight_a {self.weight_a:g} says P(A better) is above '
                    f"{0.5 + SOFT_MARGIN:g}")
        if self.winner == "A" and self.weight_a < 0.5 - SOFT_MARGIN:
            return (f'winner is "A" but weight_a {self.weight_a:g} says P(A better) is below '
                    f"{0.5 - SOFT_MARGIN:g}")
        return None


class PerplexityRecord(KeyedRecord):
    """Negative log-likelihood of one evaluation example under one model."""

    key: str
    """Content key: model identity + example content."""
    model: str
    """Display name of the model scored."""
    model_key: str
    """Content identity of the model."""
    example_id: str
    """Id of the evaluation example."""
    nll_sum: float
    """Sum of the natural-log NLL over the scored tokens."""
    n_tokens: int
    """Tokens scored (response tokens for prompt/response pairs, all for plain text)."""
    n_bytes: int
    """UTF-8 bytes of the scored text (for bits per byte)."""
    window: int | None = None
    """Tokens per forward pass when the text was longer than the model's context and was
    scored in rolling windows (stride = window, as lm-eval's ``loglikelihood_rolling``);
    ``None``: the text fit and was scored in one pass."""


class DataRef(Record):
    """Where an input file came from and what it held."""

    name: str
    """Short name."""
    source: str
    """Path or dataset name."""
    sha256: str
    """Content hash."""
    n: int
    """Number of records."""


class Invocation(Record):
    """One command that wrote a run directory (its first, a rerun, or ``judge RUN``)."""

    command: str
    """The evalharness command (``compare``, ``judge``, ...)."""
    argv: Argv
    """Its command line, secrets masked."""
    started: str
    """ISO-8601 UTC time it started writing."""


class Manifest(Record):
    """What a run directory holds, enough to redo or audit it. Rewritten atomically.

    A run directory belongs to one command and one set of inputs (``command``, ``inputs``):
    another command or other inputs are refused before anything is written.
    """

    schema_version: int = SCHEMA_VERSION
    """Version of these records."""
    run_id: str
    """The run directory's name."""
    command: str
    """The evalharness command that made the run (``generate``, ``ppl``, ...)."""
    created: str
    """ISO-8601 UTC time the run was first started."""
    updated: str
    """ISO-8601 UTC time of the last change."""
    versions: dict[str, str]
    """Versions of Python, evalharness and the ML libraries in use."""
    argv: Argv
    """The command line that made the run; later ones are in ``invocations``."""
    backend: str | None = None
    """Backend that generated or scored (``hf``, ``vllm``, ``openai``, ``fake``)."""
    engine: str | None = None
    """The engine identity in the answer and perplexity keys (backend and dtype)."""
    prompts: DataRef | None = None
    """The prompt set answered."""
    ppl_data: DataRef | None = None
    """The evaluation data scored for perplexity."""
    candidates: tuple[ModelSpec, ...] = ()
    """Every model in the run, baseline included."""
    baseline: str | None = None
    """Name of the baseline model, when there is one."""
    gen: GenConfig | None = None
    """Generation settings."""
    judge: str | None = None
    """Name of the judge (``compare`` and ``league``)."""
    serving_check: str | None = None
    """What the serving self-check measured (``--verify``), when it ran."""
    ppl_backend: str | None = None
    """When ``ppl`` scored with another backend than the one asked for, which and why (on
    vLLM's CPU build transformers scores faster with the same NLLs; ``--ppl-backend``)."""
    ppl_windows: dict[str, int] | None = None
    """When texts longer than the model's context were scored in rolling windows:
    ``{"window": tokens per pass, "stride": tokens advanced per pass, "texts": how many
    records}`` (lm-eval's ``loglikelihood_rolling``); ``None`` when every text fit."""
    status: RunStatus = "running"
    """``complete`` when every stage finished; ``interrupted`` after Ctrl-C; ``failed``."""
    counts: dict[str, int] = Field(default_factory=dict)
    """Records on disk per file (answers, perplexity, judgments)."""
    inputs: dict[str, Any] | None = None
    """What the records depend on: the models' keys, prompt set and data hashes, generation
    settings, engine, judge fingerprint, pairs. A rerun must match it to write here."""
    judge_fingerprint: str | None = None
    """Fingerprint of the judge that made every judgment in the run (see ``judge``)."""
    price_sources: dict[str, str] = Field(default_factory=dict)
    """Per judge, where the cost of its judgments came from: its config's prices,
    ``--judge-price``, or 0 for an endpoint other than its config's own."""
    jury: dict[str, str] = Field(default_factory=dict)
    """When several judges judged the run (``judge RUN --judge a --judge b``): each juror's
    name and fingerprint. Each juror's verdicts are stored under its own name; the headline
    combines them (docs/judging.md, "Juries"). Empty: one judge, ``judge``."""
    invocations: tuple[Invocation, ...] = ()
    """Every command that wrote the run, oldest first (reruns and ``judge RUN`` included)."""
