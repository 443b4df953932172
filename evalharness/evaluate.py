"""``compare`` and ``league``: answers, perplexity, judging in both orders, statistics, report.

The product in two functions. Every input (models, prompt set, judge, its API key, the
perplexity data) is checked before any model is loaded; each stage writes its records as they
finish, so a rerun of a finished command makes no model or judge call, and a killed one
resumes. Results come back as objects (usable, for instance, as an Optuna objective).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalharness.backends.registry import BackendChoice, BackendOptions
from evalharness.candidates import BASELINE, resolve_models
from evalharness.errors import UserError
from evalharness.judging.config import JudgeConfig, price_line, resolve_judge
from evalharness.judging.stage import (
    JudgeCounts,
    JudgeOptions,
    MakeJudge,
    Pair,
    baseline_pairs,
    check_options,
    combined_counts,
    judge_plan,
    judge_run,
    plan_run,
)
from evalharness.perplexity import load_eval_data
from evalharness.pipeline import (
    DEFAULT_RUNS_ROOT,
    BackendSpec,
    LazyBackend,
    Progress,
    StageCounts,
    bound_inputs,
    claim_run,
    default_run_id,
    generate_answers,
    input_ref,
    locked_run,
    perplexity_windows,
    probe_texts,
    prompts_ref,
    score_perplexity,
    tracked_run,
    versions,
)
from evalharness.prompts import DEFAULT_PROMPTS, load_prompt_set
from evalharness.rater_names import is_primary
from evalharness.report.cli import check_bootstrap, check_format, write_rendered
from evalharness.report.data import ReportData, load_report_data
from evalharness.schema import GenConfig, Judgment, Manifest, ModelSpec
from evalharness.stats.summary import CandidateStats
from evalharness.store import JUDGMENTS, RunDir, utc_now


@dataclass(frozen=True)
class LeagueResult:
    """What ``league`` (and ``compare``) computed, with the run directory it lives in."""

    run_dir: Path
    """The run directory (answers, judgments, perplexity, manifest, reports)."""
    report: ReportData
    """Every statistic and record, as the reports show them."""
    answers: StageCounts
    """Where the answers came from (on disk, reused, generated now)."""
    judging: JudgeCounts
    """What the judging stage did (calls, tokens, cost, invalid)."""
    perplexity: StageCounts | None
    """Where the perplexity records came from, when eval data was given."""
    reports: tuple[Path, ...]
    """Report files written."""
    serving_check: str | None
    """The serving self-check's measurements, when it ran."""

    @property
    def baseline(self) -> str:
        """The baseline's name."""
        return self.report.baseline

    def candidate(self, name: str) -> CandidateStats:
        """One candidate's statistics against the baseline.

        Raises:
            KeyError: no candidate of that name.
        """
        for stats in self.report.stats.candidates:
            if stats.head_to_head.candidate == name:
                return stats
        raise KeyError(name)

    @property
    def win_rates(self) -> dict[str, float]:
        """Win rate (ties as half) of each candidate against the baseline."""
        return {c.head_to_head.candidate: c.head_to_head.win_rate
                for c in self.report.stats.candidates}


@dataclass(frozen=True)
class CompareResult(LeagueResult):
    """``compare``'s result: a league of one, with the candidate's numbers at hand."""

    @property
    def stats(self) -> CandidateStats:
        """The candidate's statistics against the baseline."""
        return self.report.stats.candidates[0]

    @property
    def win_rate(self) -> float:
        """Win rate against the baseline, ties as half (the number an objective returns)."""
        return self.stats.head_to_head.win_rate

    @property
    def p_value(self) -> float:
        """Exact two-sided sign test of the win rate against 50%."""
        return self.stats.head_to_head.p_value


def _backend_spec(backend: BackendSpec | str, verify: bool) -> BackendSpec:
    if isinstance(backend, BackendSpec):
        return backend
    return BackendChoice(backend, BackendOptions(), verify).spec()


def _check_league(specs: Sequence[ModelSpec]) -> None:
    baseline, candidates = specs[0], specs[1:]
    if not candidates:
        raise UserError("the league is empty: no adapter was given. Fix: name at least one "
                        "adapter folder to compare with the baseline.")
    seen: dict[str, str] = {baseline.key: baseline.name}
    for spec in candidates:
        if spec.key in seen:
            other = seen[spec.key]
            what = "is the baseline itself" if other == baseline.name else f"is {other} again"
            raise UserError(f"candidate {spec.name} {what} (same model content). Fix: compare "
                            "different models; an adapter folder is compared with 'baseline'.")
        seen[spec.key] = spec.name


def _judge(judge: str | Path | JudgeConfig, judges_dir: Path | None) -> JudgeConfig:
    return judge if isinstance(judge, JudgeConfig) else resolve_judge(judge, judges_dir)


def _probe(config: JudgeConfig) -> None:
    """A wrong URL, key or model must fail before any model is loaded or file written, not
    after every answer is made (one cheap request; after the local checks, which are free)."""
    if config.kind == "llm" and config.backend == "vllm":
        from evalharness.judging.local import probe_local_judge

        probe_local_judge(config)  # vLLM installed, the model there: no engine loaded yet
    elif config.kind == "llm":
        from evalharness.judging.llm import probe_judge

        probe_judge(config)


def league(
    adapters: Sequence[str],
    baseline: str = BASELINE,
    *,
    prompts: Path | str = DEFAULT_PROMPTS,
    judge: str | Path | JudgeConfig | Sequence[JudgeConfig] = "reference",
    backend: BackendSpec | str = "hf",
    ppl_data: Path | str | None = None,
    base: str | None = None,
    gen: GenConfig | None = None,
    round_robin: bool = False,
    verify: bool = True,
    run_dir: Path | None = None,
    runs_root: Path = DEFAULT_RUNS_ROOT,
    judges_dir: Path | None = None,
    report_formats: Sequence[str] = ("md", "html"),
    seed: int = 0,
    n_boot: int = 2000,
    argv: Sequence[str] = (),
    progress: Progress | None = None,
    command: str = "league",
) -> LeagueResult:
    """Rank adapters against a baseline (and each other with ``round_robin``).

    Args:
        adapters: adapter (or merged model) folders.
        baseline: ``baseline`` (the base model) or a model folder.
        prompts: the prompt set.
        judge: a judge name under ``judges/``, a judge folder, or a loaded config; several
            loaded configs make a jury (each juror's verdicts stored under its name, the
            headline their combined verdict; docs/judging.md, "Juries").
        backend: a backend name (default settings) or a ``BackendSpec``.
        ppl_data: held-out data for perplexity (enables the paradox analysis).
        base: base model override (default: from the adapters' configs).
        gen: generation settings (default: greedy, 256 new tokens).
        round_robin: also judge every adapter against every other.
        verify: run the serving self-check before the first answer.
        report_formats: reports written into the run directory (``md``, ``html``).

    Raises:
        UserError: bad input of any kind, before any model is loaded.
    """
    if baseline in adapters:
        raise UserError(f"candidate {baseline} is the baseline itself. Fix: name an adapter "
                        f"folder to compare with {baseline}.")
    specs = resolve_models([baseline, *adapters], base)
    _check_league(specs)
    jury = ([_judge(j, judges_dir) for j in judge]
            if not isinstance(judge, str | Path | JudgeConfig) else [_judge(judge, judges_dir)])
    if len({j.name for j in jury}) != len(jury):
        raise UserError(f"the same judge is named twice ({', '.join(j.name for j in jury)}). "
                        "Fix: name each juror once.")
    judge_config = jury[0]
    prompt_set = load_prompt_set(prompts)
    referenced = next((j for j in jury if j.uses_reference), None)
    if referenced is not None and not any(p.reference for p in prompt_set.prompts):
        raise UserError(f"judge {referenced.name} compares answers with each prompt's "
                        f"'reference', and {prompt_set.source} has none. Fix: add references "
                        "to the prompt set, or use an LLM judge (--judge pairwise-binary).")
    formats = [check_format(fmt) for fmt in report_formats]
    check_bootstrap(seed, n_boot)  # not after every answer and judgment is made
    data = load_eval_data(ppl_data) if ppl_data is not None else None
    spec = _backend_spec(backend, verify)
    gen = gen or GenConfig()
    spec.precheck(specs, prompt_set.prompts, gen)
    names = [s.name for s in specs]
    pairs: list[Pair] = baseline_pairs(names[1:], names[0])
    if round_robin:
        pairs += [(x, y) for i, x in enumerate(names[1:]) for y in names[i + 2:]]
    # One judge keeps the key it always had (existing runs resume); a jury lists its jurors.
    judged_by: str | list[str] = (judge_config.fingerprint if len(jury) == 1
                                  else sorted(j.fingerprint for j in jury))
    inputs = {"prompts": prompt_set.sha256, "gen": gen.model_dump(mode="json"),
              "engine": spec.engine, "judge": judged_by,
              "data": data.ref.sha256 if data else None, "round_robin": round_robin}
    run = RunDir(run_dir or runs_root / default_run_id(command, specs, inputs))
    now = utc_now()
    manifest = Manifest(
        run_id=run.run_id, command=command, created=now, updated=now, versions=versions(),
        argv=tuple(argv or sys.argv), backend=spec.name, engine=spec.engine,
        prompts=prompts_ref(prompt_set), ppl_data=input_ref(data.ref) if data else None,
        candidates=tuple(specs), baseline=names[0], gen=gen, judge=judge_config.name,
        judge_fingerprint=judge_config.fingerprint, inputs=bound_inputs(specs, inputs),
        price_sources={j.name: price_line(j) for j in jury},
        jury={j.name: j.fingerprint for j in jury} if len(jury) > 1 else {},
    )
    claim_run(run, manifest)  # a foreign run directory is refused before the judge is asked
    for juror in jury:
        _probe(juror)
    lazy = LazyBackend(spec.factory, specs, run.path,
                       verify_probes=probe_texts(prompt_set, data) if spec.verify else ())
    # The lock is taken first and held until the reports are written too.
    with locked_run(run, manifest), tracked_run(run, manifest) as updates:
        try:
            answers = generate_answers(run, specs, prompt_set, gen, lazy, spec.engine,
                                       runs_root, progress)
            ppl = (score_perplexity(run, specs, data, lazy, spec.engine, runs_root,
                                    progress) if data is not None else None)
        finally:
            lazy.close()  # free the models before judging (a local judge may need it)
        if lazy.check is not None:
            updates["serving_check"] = lazy.check.summary()
        if data is not None:
            updates["ppl_windows"] = perplexity_windows(run)
        judging = combined_counts([judge_run(run, juror, names[0], progress=progress,
                                             runs_root=runs_root, pairs=pairs)
                                   for juror in jury])
        report = load_report_data(run.path, seed=seed, n_boot=n_boot)
        written = tuple(write_rendered(report, fmt) for fmt in formats)
        if report.stats.problem is not None:
            # Every judgment is invalid: the reports show the invalid count and replies,
            # and the run is marked failed rather than complete.
            raise UserError(f"{report.stats.problem} The reports are in {run.path}.")
    check = run.read_manifest().serving_check
    return LeagueResult(run.path, report, answers, judging, ppl, written, check)


def compare(candidate: str, baseline: str = BASELINE, **options: object) -> CompareResult:
    """Does ``candidate`` beat ``baseline``? A league of one; see ``league`` for options.

    Raises:
        UserError: bad input of any kind, before any model is loaded.
    """
    options.setdefault("command", "compare")
    result = league([candidate], baseline, **options)  # type: ignore[arg-type]
    return CompareResult(**{f: getattr(result, f) for f in result.__dataclass_fields__})


def judge_existing_run(run: RunDir, judge: JudgeConfig, baseline: str | None = None,
                       candidates: Sequence[str] | None = None,
                       progress: Progress | None = None, runs_root: Path = DEFAULT_RUNS_ROOT,
                       argv: Sequence[str] = (), make_judge: MakeJudge | None = None,
                       options: JudgeOptions | None = None) -> JudgeCounts:
    """``evalharness judge RUN`` with one judge (see ``judge_with``)."""
    (counts,) = judge_with(run, [judge], baseline, candidates, progress, runs_root, argv,
                           make_judge, options)
    return counts


def judge_with(run: RunDir, judges: Sequence[JudgeConfig], baseline: str | None = None,
               candidates: Sequence[str] | None = None,
               progress: Progress | None = None, runs_root: Path = DEFAULT_RUNS_ROOT,
               argv: Sequence[str] = (), make_judge: MakeJudge | None = None,
               options: JudgeOptions | None = None) -> list[JudgeCounts]:
    """``evalharness judge RUN``: judge (or resume judging) the answers of a run made by
    ``generate``, ``compare``, ``league`` or ``demo``, with one judge or a jury.

    Judging adds judgments to a run; it never changes what the run is. One judge is allowed
    when every judgment already in the run is its own (same fingerprint: model, settings,
    templates). Several judges (a jury) may join the run's judge: each juror's verdicts are
    stored under its own name and the run's headline becomes the jury's combined verdict. The
    run keeps its command, inputs and first command line, and this invocation is appended to
    the manifest's ``invocations``. Everything is checked before the lock is taken or a file
    is touched, so a refused ``judge`` changes nothing.

    Raises:
        UserError: not a run, no answers, no baseline, unknown models, a changed prompt set,
            a missing API key, another judge's judgments in the run (one judge), a juror
            whose name the run knows with other settings, or a run being written.
    """
    manifest = run.read_manifest()
    chosen = baseline or manifest.baseline
    if chosen is None:
        models = ", ".join(c.name for c in manifest.candidates) or "none"
        raise UserError(f"{run.path}: no baseline recorded for this run (models: {models}). "
                        "Fix: pass --baseline NAME.")
    configs = list(judges)
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise UserError(f"the same judge is named twice ({', '.join(names)}). Fix: name each "
                        "juror once.")
    plans = [plan_run(run, config, chosen, candidates) for config in configs]
    for config in configs:
        _check_same_judge(run, manifest, config, jury=len(configs) > 1)
        check_options(config, options or JudgeOptions())
    for config in configs:
        _probe(config)
    update: dict[str, object] = {
        "argv": tuple(argv or sys.argv),
        "price_sources": {**manifest.price_sources,
                          **{c.name: price_line(c) for c in configs}}}
    if len(configs) > 1:
        update["jury"] = {**manifest.jury, **{c.name: c.fingerprint for c in configs}}
        if manifest.judge is None:
            update.update(judge=configs[0].name, judge_fingerprint=configs[0].fingerprint)
    elif manifest.judge is None or not manifest.jury:
        update.update(judge=configs[0].name, judge_fingerprint=configs[0].fingerprint)
    judged = manifest.model_copy(update=update)
    with locked_run(run, judged), tracked_run(run, judged, command="judge"):
        return [judge_plan(run, plan, config, progress, runs_root, make_judge, options)
                for plan, config in zip(plans, configs, strict=True)]


def _check_same_judge(run: RunDir, manifest: Manifest, config: JudgeConfig,
                      jury: bool = False) -> None:
    """Refuse a judge that would mix verdicts: one judgments file holds each judge's
    verdicts under its own name, so a judge the run knows by name must come with the same
    settings, and a new judge may join only as a juror (``jury``): alone, its verdicts would
    be pooled with the run's judge's as if they were one opinion."""
    known = dict(manifest.jury)
    if manifest.judge is not None and manifest.judge_fingerprint is not None:
        known.setdefault(manifest.judge, manifest.judge_fingerprint)
    if known:
        if known.get(config.name) == config.fingerprint or (jury and config.name not in known):
            return
        if config.name in known:
            other = f"{config.name} with other settings (fingerprint {known[config.name][:12]})"
        else:
            other = f"{manifest.judge} (fingerprint {known[manifest.judge or ''][:12]})"
    else:  # a run from before fingerprints were recorded: the judgments' names tell
        names = sorted({j.judge for j in run.log(JUDGMENTS, Judgment).read()
                        if is_primary(j.judge)} - {config.name})
        if not names or jury:
            return
        other = ", ".join(names)
        manifest = manifest.model_copy(update={"judge": names[0]})
    raise UserError(
        f"{run.path} was judged by {other}; judging it with {config.name} (fingerprint "
        f"{config.fingerprint[:12]}) would mix two judges' verdicts under one name, or pool "
        f"them as one opinion. Nothing was written. Fix: judge with --judge {manifest.judge} "
        "and the settings the run was judged with (this resumes or extends it); or form a "
        f"jury: `evalharness judge {run.path} --judge {manifest.judge} --judge {config.name}` "
        "(each juror's verdicts stored under its own name); or judge the answers in a run of "
        "their own (`evalharness generate` with this run's models, prompts and options and a "
        "new --run-dir copies its answers without a model call).")
