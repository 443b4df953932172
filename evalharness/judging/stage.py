"""The judging stage: every pair of models, on every prompt both answered, in both orders.

For a pair (x, y) each prompt gives two games: x's answer as A and y's as B, then the
reverse. The judge sees only "A" and "B"; a ``Judgment`` records which model sat in each
position, so mapping verdicts back to models is a lookup (``Tally``, and the stats package).

A game's key is content (judge fingerprint, prompt, answer A, answer B: order matters).
A game is done when a record with its key *and* its two model names is on disk. Records
with the same key, in this run or another under ``runs_root``, are copied with the names
changed instead of asking the judge again (two adapters that gave the same answer, or a
second ``compare`` against the same baseline). Each judgment is appended from the event
loop as soon as it finishes, so a killed process loses only the calls in flight.

Nothing is ever rewritten. Re-judging (``JudgeOptions.retry_invalid``) appends a new record
for each game whose record is invalid; the new one supersedes it when the file is read
(``stats.current``). The noise floor's repeats (``JudgeOptions.repeats``, ``repeats.py``)
are games of their own judges, ``<judge>#k``, under their own keys.

A judge in batch mode (``JudgeConfig.mode``, ``--judge-mode batch``) sends the games it
must judge through the provider's Batch API first (``batch.py``: recorded in the run, so a
killed run resumes polling instead of paying twice); what the batch does not answer is
judged online here, as any game.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from evalharness.errors import JudgeError, UserError
from evalharness.invalid import all_invalid_problem
from evalharness.judging.base import Judge, Outcome
from evalharness.judging.batch import BatchRunner, check_batch_config
from evalharness.judging.config import JudgeConfig, price_line
from evalharness.judging.repeats import (
    DEFAULT_SAMPLE,
    Identity,
    check_repeats,
    repeat_config,
    repeat_games,
    sample_games,
)
from evalharness.judging.templates import GameText, neutralised, question_text
from evalharness.keys import content_key
from evalharness.pipeline import (
    DEFAULT_RUNS_ROOT,
    Progress,
    SilentProgress,
    answer_key,
)
from evalharness.prompts import load_prompt_set
from evalharness.schema import Answer, Judgment, Manifest, Prompt, PromptSet, TokenUsage
from evalharness.stats.current import current_judgments
from evalharness.stats.noise import NoiseFloor, noise_floor
from evalharness.store import ANSWERS, JUDGMENTS, JsonlLog, RunDir, find_reusable

Pair = tuple[str, str]
MakeJudge = Callable[[JudgeConfig], Judge]


@dataclass(frozen=True)
class Tally:
    """A pair's games seen from the first model of the pair (the candidate)."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    invalid: int = 0
    """Games without a readable verdict: shown, never counted as ties."""


@dataclass(frozen=True)
class JudgeCounts:
    """What the judging stage did and what the run now holds."""

    run_dir: Path
    judge: str
    total: int
    """Games needed: pairs x prompts both models answered x 2 orders."""
    on_disk: int
    """Already in this run."""
    reused: int
    """Copied from a record with the same key (another run, or an identical game)."""
    computed: int
    """Judged now."""
    skipped: int
    """Games the judge cannot play (the reference judge on prompts without a reference)."""
    invalid: int
    """Games in the run (of the ``total``) stored without a readable verdict."""
    calls: int
    """Judge calls made now, retries included."""
    usage: TokenUsage
    """Judge tokens spent now."""
    cost_usd: float
    """Estimated cost of the calls made now."""
    tallies: dict[Pair, Tally] = field(default_factory=dict)
    """Per pair (candidate, opponent): wins, ties, losses, invalid of the candidate."""
    problem: str | None = None
    """Set when every game in the run is invalid: the judge's replies are the problem (the
    message quotes some, and says what to fix). The CLI prints it and exits 2."""
    price_source: str = ""
    """Where ``cost_usd``'s prices came from (``JudgeConfig.price_source``)."""
    retried: int = 0
    """Games stored invalid that got a new record now (``--retry-invalid``: asked again, or
    copied from a valid judgment of the same game elsewhere); the new records supersede."""
    repeated: int = 0
    """Noise-floor repeats brought to disk now (judged or copied), all repeats together."""
    noise: NoiseFloor | None = None
    """The judge's noise floor, when repeats were asked (``--repeats``) and the plan has a
    baseline (one model in every pair)."""
    batched: int = 0
    """Games judged now through the Batch API (``--judge-mode batch``), at the batch price."""
    batches: tuple[str, ...] = ()
    """Batch ids submitted or resumed now."""


@dataclass(frozen=True)
class JudgeOptions:
    """What ``judge RUN`` does beyond judging the games not on disk."""

    retry_invalid: bool = False
    """Ask again the games whose judgment on disk is invalid (``--retry-invalid``). The new
    record is appended; it supersedes the invalid one (``stats.current``)."""
    repeats: int = 0
    """Ask a sample of judged games again this many times (``--repeats``): the noise floor."""
    repeat_sample: int = DEFAULT_SAMPLE
    """(candidate, prompt) pairs in that sample, both orders each (``--repeat-sample``)."""


@dataclass(frozen=True)
class PlannedGame:
    """One game to have on disk."""

    key: str
    prompt: Prompt
    pair: Pair
    first: str
    """Model shown as A."""
    second: str
    """Model shown as B."""
    text: GameText

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes a record this game's: key and the two names in order."""
        return (self.key, self.first, self.second)


def combined_counts(counts: Sequence[JudgeCounts]) -> JudgeCounts:
    """A jury's judging in one line: the jurors' counts added up (tallies and problems are
    the first juror's; each juror's own are in its ``JudgeCounts``)."""
    first = counts[0]
    if len(counts) == 1:
        return first
    return replace(
        first, judge=", ".join(c.judge for c in counts),
        **{name: sum(getattr(c, name) for c in counts)
           for name in ("total", "on_disk", "reused", "computed", "skipped", "invalid",
                        "calls", "cost_usd", "retried", "repeated", "batched")},
        usage=TokenUsage(prompt_tokens=sum(c.usage.prompt_tokens for c in counts),
                         completion_tokens=sum(c.usage.completion_tokens for c in counts)),
        problem=next((c.problem for c in counts if c.problem), None))


@dataclass(frozen=True)
class Plan:
    """The games a judging stage needs, and how many the judge cannot play."""

    games: tuple[PlannedGame, ...]
    skipped: int


def baseline_pairs(candidates: Sequence[str], baseline: str) -> list[Pair]:
    """Which pairs are judged: each candidate against the baseline.

    >>> baseline_pairs(["lora-a", "lora-b"], "baseline")
    [('lora-a', 'baseline'), ('lora-b', 'baseline')]
    """
    return [(name, baseline) for name in candidates if name != baseline]


def judgment_key(judge: JudgeConfig, prompt: Prompt, answer_a: str, answer_b: str) -> str:
    """Content key of a game: judge fingerprint, prompt, and both answers in their order.

    A game whose texts hold invisible characters is keyed apart (``escaped``): the judge
    now sees them as visible escapes, so a judgment made before that is not reused.
    """
    shown = {"id", "messages", "reference"} if judge.uses_reference else {"id", "messages"}
    identity: dict[str, object] = {
        "judge": judge.fingerprint, "prompt": prompt.model_dump(mode="json", include=shown),
        "a": answer_a, "b": answer_b}
    text = GameText(question_text(prompt.messages), answer_a, answer_b, prompt.reference)
    if escaped_characters(judge, text):
        identity["escaped"] = "visible-controls-v1"
    return content_key(identity)


def escaped_characters(judge: JudgeConfig, text: GameText) -> int:
    """Invisible characters an LLM judge is shown as escapes in this game (the reference
    counts only when the judge's templates show it; the reference judge reads no text)."""
    if judge.kind != "llm":
        return 0
    if not judge.uses_reference:
        text = dataclasses.replace(text, reference=None)
    return neutralised(text)


def plan_games(pairs: Sequence[Pair], prompts: Sequence[Prompt],
               answers: Mapping[str, Mapping[str, str]], judge: JudgeConfig) -> Plan:
    """Both orders of every pair on every prompt both models answered.

    ``answers`` maps model name -> prompt id -> answer text.
    """
    games: list[PlannedGame] = []
    skipped = 0
    for x, y in pairs:
        for prompt in prompts:
            if prompt.id not in answers.get(x, {}) or prompt.id not in answers.get(y, {}):
                continue
            if judge.kind == "reference" and prompt.reference is None:
                skipped += 2
                continue
            question = question_text(prompt.messages)
            for first, second in ((x, y), (y, x)):
                a, b = answers[first][prompt.id], answers[second][prompt.id]
                games.append(PlannedGame(
                    key=judgment_key(judge, prompt, a, b), prompt=prompt, pair=(x, y),
                    first=first, second=second,
                    text=GameText(question, a, b, prompt.reference)))
    return Plan(tuple(games), skipped)


@dataclass(frozen=True)
class RunInputs:
    """What judging reads from a run: its manifest, prompts, and answers by model."""

    manifest: Manifest
    prompts: PromptSet
    answers: dict[str, dict[str, str]]
    """Model name -> prompt id -> answer text (the answers of the run's generation config)."""


def load_run_inputs(run: RunDir) -> RunInputs:
    """Read a run's manifest, reload its prompt set (checking its hash), and its answers.

    Raises:
        UserError: not a run, a run without answers, or a prompt set that changed.
    """
    manifest = run.read_manifest()
    if manifest.prompts is None or manifest.gen is None:
        raise UserError(f"{run.path}: this run has no answers to judge (it was made by "
                        f"'{manifest.command}' without prompts). Fix: judge a run made by "
                        "`evalharness generate --prompts ...`.")
    prompts = load_prompt_set(manifest.prompts.source)
    if prompts.sha256 != manifest.prompts.sha256:
        raise UserError(
            f"the prompt set {manifest.prompts.source} changed since {run.path} generated its "
            "answers (its content hash differs). Fix: restore the file as it was, or generate "
            "the answers again with the new prompt set."
        )
    by_key = {a.key: a for a in run.log(ANSWERS, Answer).read()}
    answers: dict[str, dict[str, str]] = {}
    for spec in manifest.candidates:
        for prompt in prompts.prompts:
            found = by_key.get(answer_key(spec, prompt, manifest.gen,
                                          manifest.engine or manifest.backend or ""))
            if found is not None:
                answers.setdefault(spec.name, {})[prompt.id] = found.text
    return RunInputs(manifest, prompts, answers)


def default_judge_factory(config: JudgeConfig, notify: Callable[[str], None] | None = None
                          ) -> Judge:
    """The real judge for a config: ``LLMJudge``, ``LocalJudge`` (``backend: vllm``) or
    ``ReferenceJudge``; ``notify`` shows why the LLM judge waits when a wait is long."""
    if config.kind == "reference":
        from evalharness.judging.reference import ReferenceJudge

        return ReferenceJudge(config)
    if config.backend == "vllm":
        from evalharness.judging.local import LocalJudge

        return LocalJudge(config, notify=notify)
    from evalharness.judging.llm import LLMJudge

    return LLMJudge(config, notify=notify)


def judge_run(run: RunDir, judge: JudgeConfig, baseline: str,
              candidates: Sequence[str] | None = None, progress: Progress | None = None,
              runs_root: Path = DEFAULT_RUNS_ROOT, *, pairs: Sequence[Pair] | None = None,
              make_judge: MakeJudge | None = None, options: JudgeOptions | None = None
              ) -> JudgeCounts:
    """Make sure ``run`` holds both orders of every game between each candidate and the
    baseline (or of the given ``pairs``), judging only what is not on disk.

    Args:
        run: a run directory with answers.
        judge: the judge definition (``config.resolve_judge``).
        baseline: the model every candidate plays.
        candidates: models to judge (default: every other model with answers).
        progress: progress reporting.
        runs_root: where other runs live, for reusing their judgments.
        pairs: explicit (x, y) pairs instead of candidates vs baseline (a round robin).
        make_judge: builds the judge (default: the real LLM or reference judge).
        options: re-judging invalid games, the noise floor's repeats (``JudgeOptions``).

    Raises:
        UserError: unknown models, no key, a changed prompt set, repeats of an offline judge.
        JudgeError: the endpoint kept failing (what finished is saved; rerun to resume).
    """
    plan = plan_run(run, judge, baseline, candidates, pairs)
    return judge_plan(run, plan, judge, progress, runs_root, make_judge, options)


def plan_run(run: RunDir, judge: JudgeConfig, baseline: str,
             candidates: Sequence[str] | None = None, pairs: Sequence[Pair] | None = None
             ) -> Plan:
    """The games ``judge_run`` needs in ``run``, checked before anything is judged.

    Raises:
        UserError: unknown models, a changed prompt set, a reference judge without
            references (see ``judge_run``).
    """
    inputs = load_run_inputs(run)
    if pairs is None:
        chosen = _check_models(inputs, baseline, candidates)
        pairs = baseline_pairs(chosen, baseline)
    plan = plan_games(pairs, inputs.prompts.prompts, inputs.answers, judge)
    if judge.kind == "reference" and not plan.games and plan.skipped:
        raise UserError(f"the reference judge needs prompts with a 'reference' answer, and "
                        f"none of {inputs.prompts.source} has one. Fix: add references or "
                        "use an LLM judge.")
    return plan


def _check_models(inputs: RunInputs, baseline: str, candidates: Sequence[str] | None
                  ) -> list[str]:
    answered = sorted(inputs.answers)
    listing = ", ".join(answered) or "none"
    if baseline not in inputs.answers:
        raise UserError(f"baseline '{baseline}' has no answers in this run (models with "
                        f"answers: {listing}). Fix: pass --baseline with one of them.")
    chosen = list(candidates) if candidates else [m for m in answered if m != baseline]
    unknown = [m for m in chosen if m not in inputs.answers]
    if unknown:
        raise UserError(f"no answers in this run for {', '.join(unknown)} (models with "
                        f"answers: {listing}). Fix: pass --candidate with one of them.")
    if baseline in chosen:
        raise UserError(f"'{baseline}' is the baseline; it cannot also be a candidate. "
                        "Fix: leave it out of --candidate.")
    if not chosen:
        raise UserError(f"nothing to judge: '{baseline}' is the only model with answers. "
                        "Fix: generate answers for at least one candidate first.")
    return chosen


def judge_plan(run: RunDir, plan: Plan, judge: JudgeConfig, progress: Progress | None = None,
               runs_root: Path = DEFAULT_RUNS_ROOT, make_judge: MakeJudge | None = None,
               options: JudgeOptions | None = None) -> JudgeCounts:
    """Judge the games of ``plan`` that ``run`` does not hold yet (see ``judge_run``), then
    what ``options`` asks: invalid games again, and the noise floor's repeats."""
    options = options or JudgeOptions()
    check_options(judge, options)
    shown = progress or SilentProgress()
    log = run.log(JUDGMENTS, Judgment)
    try:
        where = _Where(run.path, runs_root, log, shown, make_judge)
        main = _fill(where, plan.games, judge, retry_invalid=options.retry_invalid)
        extra: list[_Filled] = []
        if options.repeats and not main.spent.rejected:
            sample = sample_games(plan.games, _counting(log.read()), options.repeat_sample)
            extra = [_fill(where, repeat_games(sample, k), repeat_config(judge, k),
                           retry_invalid=options.retry_invalid)
                     for k in range(1, options.repeats + 1)]
    finally:
        log.close()
    spent = _Spent.total([main.spent, *(f.spent for f in extra)])
    if spent.rejected:
        raise _rejected_error(judge, spent)
    judgments = log.read()
    records = _counting(judgments)
    held = [records[g.identity] for g in plan.games if g.identity in records]
    baseline = _baseline_of(plan)
    return JudgeCounts(
        run_dir=run.path, judge=judge.name, total=len(plan.games),
        on_disk=len(plan.games) - main.missing, reused=main.reused, computed=main.computed,
        skipped=plan.skipped,
        invalid=sum(1 for r in held if not r.valid),
        calls=spent.calls,
        usage=TokenUsage(prompt_tokens=spent.prompt_tokens,
                         completion_tokens=spent.completion_tokens),
        cost_usd=spent.cost(judge),
        tallies=tally(plan.games, records),
        problem=all_invalid_problem(held, judge.name),
        price_source=price_line(judge), retried=main.retried,
        repeated=sum(f.computed + f.reused for f in extra),
        noise=(noise_floor(judgments, judge.name, baseline)
               if options.repeats and baseline is not None else None),
        batched=spent.batched, batches=tuple(spent.batches),
    )


def check_options(judge: JudgeConfig, options: JudgeOptions) -> None:
    """Refuse options this judge cannot honour, before anything is touched.

    Raises:
        UserError: see ``repeats.check_repeats``; batch mode where there is no Batch API
            (``batch.check_batch_config``).
    """
    check_batch_config(judge)
    check_repeats(judge, options.repeats, options.repeat_sample)


def _counting(judgments: Sequence[Judgment]) -> dict[Identity, Judgment]:
    """The record that counts for each game on disk: its first valid one, else its last
    (``stats.current``: a re-judged game supersedes its invalid records)."""
    counting: dict[Identity, Judgment] = {}
    for record in current_judgments(judgments):
        counting.setdefault((record.key, record.first, record.second), record)
    return counting


def _baseline_of(plan: Plan) -> str | None:
    """The baseline: the opponent of every pair (``baseline_pairs``), if there is one."""
    opponents = {g.pair[1] for g in plan.games}
    return opponents.pop() if len(opponents) == 1 else None


@dataclass(frozen=True)
class _Where:
    """Where a fill reads and writes: the run, other runs, the log, the progress, the judge."""

    run_path: Path
    runs_root: Path
    log: JsonlLog[Judgment]
    progress: Progress
    make_judge: MakeJudge | None


@dataclass(frozen=True)
class _Filled:
    missing: int
    """Planned games not counted on disk before (invalid ones too, when re-judging)."""
    retried: int
    """Of those, games whose invalid record is superseded now (or will be: rejected)."""
    reused: int
    computed: int
    spent: _Spent


def _fill(where: _Where, games: Sequence[PlannedGame], judge: JudgeConfig, *,
          retry_invalid: bool) -> _Filled:
    """Bring ``games`` to disk: copy what is known (this run, other runs), judge the rest.

    With ``retry_invalid`` a game whose counting record is invalid is not done, and only
    valid records are copied: the game is asked again, and the new record supersedes.
    """
    counting = _counting(where.log.read())
    usable = {i: r for i, r in counting.items() if r.valid or not retry_invalid}
    done = set(usable)
    by_key = {r.key: r for r in usable.values()}
    missing = [g for g in games if g.identity not in done]
    retried = len({g.identity for g in missing} & set(counting))
    wanted = {g.key for g in missing} - set(by_key)
    found = find_reusable(where.runs_root, JUDGMENTS, Judgment, wanted, exclude=where.run_path)
    by_key.update({k: r for k, r in found.items() if r.valid or not retry_invalid})
    groups: dict[str, list[PlannedGame]] = {}
    reused = 0
    for game in missing:
        if game.identity in done:
            continue  # the same game twice in the plan (a pair listed twice)
        done.add(game.identity)
        if game.key in by_key:
            where.log.append(_copy(by_key[game.key], game, judge.name))
            reused += 1
        else:
            groups.setdefault(game.key, []).append(game)
    where.log.checkpoint()
    spent = _Spent()
    if groups:
        where.progress.start(f"judging ({judge.name}"
                             + (", batch)" if judge.mode == "batch" else ")"), len(groups))
        todo = list(groups.values())
        before: dict[str, Outcome] = {}
        if judge.mode == "batch":
            todo, before = _judge_batch(where, todo, judge, spent)
        if todo:
            made = (where.make_judge(judge) if where.make_judge
                    else default_judge_factory(judge, where.progress.note))
            asyncio.run(_judge_all(todo, made, judge, where.log, where.progress, spent,
                                   before))
    computed = sum(len(g) for g in groups.values()) - spent.copies
    return _Filled(missing=len(missing), retried=retried, reused=reused + spent.copies,
                   computed=computed, spent=spent)


@dataclass
class _Spent:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Tokens of every call, batch calls included."""
    copies: int = 0
    rejected: list[str] = field(default_factory=list)
    """The endpoint's message for each game it refused (not stored)."""
    stored: int = 0
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0
    """Of the tokens, those of batch calls (charged at ``batch_discount``)."""
    batched: int = 0
    """Games judged by batch (records stored from batch results)."""
    batches: list[str] = field(default_factory=list)

    @classmethod
    def total(cls, parts: Sequence[_Spent]) -> _Spent:
        """The sum of several fills' spending."""
        return cls(calls=sum(p.calls for p in parts),
                   prompt_tokens=sum(p.prompt_tokens for p in parts),
                   completion_tokens=sum(p.completion_tokens for p in parts),
                   copies=sum(p.copies for p in parts),
                   rejected=[m for p in parts for m in p.rejected],
                   stored=sum(p.stored for p in parts),
                   batch_prompt_tokens=sum(p.batch_prompt_tokens for p in parts),
                   batch_completion_tokens=sum(p.batch_completion_tokens for p in parts),
                   batched=sum(p.batched for p in parts),
                   batches=[b for p in parts for b in p.batches])

    def cost(self, judge: JudgeConfig) -> float:
        """Estimated USD of these calls: online tokens at the judge's prices, batch tokens
        at those times ``batch_discount``."""
        online = judge.cost(self.prompt_tokens - self.batch_prompt_tokens,
                            self.completion_tokens - self.batch_completion_tokens)
        if not (self.batch_prompt_tokens or self.batch_completion_tokens):
            return online
        return online + _batch_cost(judge, self.batch_prompt_tokens,
                                    self.batch_completion_tokens)

    def add_batch_call(self, outcome: Outcome) -> None:
        """Count one batch reply (its tokens at the batch price)."""
        self.calls += outcome.attempts
        self.prompt_tokens += outcome.usage.prompt_tokens
        self.completion_tokens += outcome.usage.completion_tokens
        self.batch_prompt_tokens += outcome.usage.prompt_tokens
        self.batch_completion_tokens += outcome.usage.completion_tokens


def _batch_cost(judge: JudgeConfig, prompt_tokens: int, completion_tokens: int) -> float:
    """USD of batch tokens: the judge's prices times its ``batch_discount``."""
    return judge.cost(prompt_tokens, completion_tokens) * judge.batch_discount


def _judge_batch(where: _Where, groups: list[list[PlannedGame]], judge: JudgeConfig,
                 spent: _Spent) -> tuple[list[list[PlannedGame]], dict[str, Outcome]]:
    """Judge ``groups`` through the Batch API; return the groups the online judge still
    owes, and the batch replies already paid for them (key -> outcome).

    Each finished batch's judgments are appended and fsynced before it is marked done in
    ``batches.jsonl``: a run killed in between polls it again and stores the rest, never
    pays for it again.
    """
    by_key = {group[0].key: group for group in groups}

    def deliver(outcomes: Mapping[str, Outcome]) -> None:
        for key, outcome in outcomes.items():
            group = by_key[key]
            spent.add_batch_call(outcome)
            cost = _batch_cost(judge, outcome.usage.prompt_tokens,
                               outcome.usage.completion_tokens)
            for game in group:
                where.log.append(_record(game, outcome, judge, cost=cost))
            spent.stored += len(group)
            spent.copies += len(group) - 1
            spent.batched += len(group)
        where.log.checkpoint()

    runner = BatchRunner(judge, where.run_path, progress=where.progress)
    result = runner.run({key: group[0].text for key, group in by_key.items()}, deliver)
    spent.batches += result.polled + result.submitted
    for outcome in result.spent.values():
        spent.add_batch_call(outcome)
    online = [by_key[key] for key in by_key if key in result.online]
    return online, dict(result.spent)


def _rejected_error(judge: JudgeConfig, spent: _Spent) -> JudgeError:
    first = spent.rejected[0]
    kinds = len(set(spent.rejected))
    return JudgeError(
        f"judge '{judge.name}' at {judge.shown_url} rejected {len(spent.rejected)} "
        f"request(s) (e.g. {first}" + (f"; {kinds} different replies" if kinds > 1 else "")
        + f"). Those games are not saved; the {spent.stored} judged now are. Fix: correct "
        "what the endpoint's reply names (a prompt or answer too long for the judge model, an "
        "option it does not support), then rerun the command to judge the rest."
    )


async def _judge_all(groups: list[list[PlannedGame]], judge: Judge, config: JudgeConfig,
                     log: JsonlLog[Judgment], progress: Progress, spent: _Spent,
                     before: Mapping[str, Outcome] | None = None) -> None:
    """Judge one game per group with ``config.concurrency`` workers; append as each ends.

    ``before``: batch replies already paid for some games (key -> outcome, counted in
    ``spent`` already); their calls and cost join the game's record.
    """
    queue = iter(groups)
    before = before or {}

    async def worker() -> None:
        for group in queue:  # one iterator shared by all workers: each group judged once
            outcome = await judge.judge(group[0].text)
            spent.calls += outcome.attempts
            spent.prompt_tokens += outcome.usage.prompt_tokens
            spent.completion_tokens += outcome.usage.completion_tokens
            progress.advance()
            if outcome.rejected is not None:
                # Not the judge's answer: stored, it would pass for a finished game forever.
                spent.rejected += [outcome.rejected] * len(group)
                continue
            cost = config.cost(outcome.usage.prompt_tokens, outcome.usage.completion_tokens)
            earlier = before.get(group[0].key)
            if earlier is not None:
                outcome, cost = _after_batch(config, earlier, outcome, cost)
            for game in group:  # identical games (same key) share the one verdict
                log.append(_record(game, outcome, config, cost=cost))
            spent.stored += len(group)
            spent.copies += len(group) - 1

    try:
        async with asyncio.TaskGroup() as tasks:
            for _ in range(min(config.concurrency, len(groups))):
                tasks.create_task(worker())
    except BaseExceptionGroup as group:
        raise _first_error(group) from None
    finally:
        await judge.aclose()


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (user and judge errors before cancellations)."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_error(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


def _after_batch(config: JudgeConfig, batch: Outcome, online: Outcome, cost: float
                 ) -> tuple[Outcome, float]:
    """The online outcome of a game whose batch reply had no readable verdict, with that
    reply's call, tokens and (batch-priced) cost added: the record shows all that was paid."""
    usage = TokenUsage(
        prompt_tokens=batch.usage.prompt_tokens + online.usage.prompt_tokens,
        completion_tokens=batch.usage.completion_tokens + online.usage.completion_tokens)
    error = (None if online.error is None
             else f"{online.error} (after a batch reply without one: asked online)")
    merged = dataclasses.replace(online, usage=usage, attempts=batch.attempts + online.attempts,
                                 error=error)
    return merged, cost + _batch_cost(config, batch.usage.prompt_tokens,
                                      batch.usage.completion_tokens)


def _record(game: PlannedGame, outcome: Outcome, config: JudgeConfig,
            cost: float | None = None) -> Judgment:
    """The judgment of ``game`` (``cost``: when not the judge's full price of its tokens)."""
    if cost is None:
        cost = config.cost(outcome.usage.prompt_tokens, outcome.usage.completion_tokens)
    return Judgment(
        key=game.key, prompt_id=game.prompt.id, judge=config.name, first=game.first,
        second=game.second, verdict=outcome.verdict, winner=outcome.winner,
        weight_a=outcome.weight_a, first_length=len(game.text.answer_a),
        second_length=len(game.text.answer_b), category=game.prompt.category, raw=outcome.raw,
        usage=outcome.usage, cost_usd=cost, attempts=outcome.attempts, error=outcome.error,
        neutralised=escaped_characters(config, game.text) or None,
    )


def _copy(record: Judgment, game: PlannedGame, judge_name: str) -> Judgment:
    return record.model_copy(update={
        "judge": judge_name, "first": game.first, "second": game.second,
        "prompt_id": game.prompt.id, "category": game.prompt.category,
        "first_length": len(game.text.answer_a), "second_length": len(game.text.answer_b),
    })


def tally(games: Sequence[PlannedGame], records: Mapping[tuple[str, str, str], Judgment]
          ) -> dict[Pair, Tally]:
    """Wins, ties, losses and invalid games per pair, from the pair's first model's side."""
    counts: dict[Pair, list[int]] = {}
    for game in games:
        record = records.get(game.identity)
        if record is None:
            continue
        row = counts.setdefault(game.pair, [0, 0, 0, 0])
        if record.winner is None:
            row[3] += 1
        elif record.winner == "tie":
            row[1] += 1
        else:
            winner = record.first if record.winner == "A" else record.second
            row[0 if winner == game.pair[0] else 2] += 1
    return {pair: Tally(*row) for pair, row in counts.items()}
