"""Option groups that several commands share (backend, generation), declared once.

``@backend_options(verify=...)`` adds ``--backend``, the backends' settings and
``--verify/--no-verify`` to a typer command and hands the command one ``BackendChoice``
(``evalharness.backends.registry``).
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from evalharness.backends.registry import BackendChoice, BackendOptions
from evalharness.backends.tokens import LONG_PROMPT_POLICIES
from evalharness.errors import UserError
from evalharness.judging.config import JudgeConfig
from evalharness.prompts import DEFAULT_PROMPTS
from evalharness.schema import GenConfig

F = TypeVar("F", bound=Callable[..., Any])


def _option(annotation: Any, default: Any, help_text: str, **extra: Any) -> inspect.Parameter:
    return inspect.Parameter("x", inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, typer.Option(help=help_text,
                                                                           **extra)])


_PANEL = {"rich_help_panel": "Backend"}
_PARAMETERS: dict[str, inspect.Parameter] = {
    "backend": _option(str, "hf", "hf (transformers+peft), vllm (offline engine), "
                       "vllm-server (we start vllm serve), openai (--endpoint), ray (engine "
                       "actors on a Ray cluster).", **_PANEL),
    "device": _option(str | None, None, "hf: cpu, cuda, cuda:N or mps (default: cuda if "
                      "available).", **_PANEL),
    "dtype": _option(str | None, None, "hf/vllm: float32, bfloat16, float16 or auto.",
                     **_PANEL),
    "batch_size": _option(int, 16, "hf: prompts per forward pass.", min=1, **_PANEL),
    "max_lora_rank": _option(int | None, None, "vllm: largest adapter rank allowed (a "
                             "larger adapter is refused before the engine starts).", min=1,
                             **_PANEL),
    "max_loras": _option(int | None, None, "vllm: LoRA slots per batch (default: safe for the "
                         "build in use).", min=1, **_PANEL),
    "max_model_len": _option(int | None, None, "vllm: context length.", min=16, **_PANEL),
    "endpoint": _option(list[str] | None, None, "openai: base URL of an OpenAI-compatible "
                        "server, e.g. http://127.0.0.1:8000/v1; repeat it to spread the "
                        "adapters over several servers.", metavar="URL", **_PANEL),
    "api_key_env": _option(str | None, None, "openai: NAME of the variable holding the API "
                           "key (the key itself is never stored).", **_PANEL),
    "concurrency": _option(int, 16, "openai/vllm-server: requests in flight.", min=1,
                           **_PANEL),
    "port": _option(int | None, None, "vllm-server: loopback port (default: a free one).",
                    min=1, max=65535, **_PANEL),
    "ready_timeout": _option(float, 300.0, "vllm-server: seconds to wait for the server.",
                             min=1.0, **_PANEL),
    "ray_address": _option(str | None, None, "ray: the cluster's address (ray://host:10001, "
                           "host:6379, or auto for the one running here; default: "
                           "RAY_ADDRESS, else a fresh local instance).", **_PANEL),
    "ray_actors": _option(int | None, None, "ray: engine actors (default: one per GPU in the "
                          "cluster; 1 without GPUs).", min=1, **_PANEL),
    "ray_engine": _option(str, "vllm", "ray: the engine each actor runs, vllm or hf.",
                          **_PANEL),
}
_OPTION_NAMES = tuple(name for name in _PARAMETERS if name not in {"backend", "endpoint"})


def _grouped(target: str, parameters: dict[str, inspect.Parameter],
             build: Callable[[dict[str, Any]], Any]) -> Callable[[F], F]:
    """A decorator: add ``parameters`` to a typer command and pass ``build(values)`` to the
    command as its ``target`` argument instead."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        # typer reads Annotated metadata from the signature; resolve the string annotations
        # (``from __future__ import annotations``) so the command's own options keep theirs.
        hints = typing.get_type_hints(command, include_extras=True)
        kept = [p.replace(annotation=hints.get(p.name, p.annotation))
                for p in signature.parameters.values() if p.name != target]
        added = [p.replace(name=name) for name, p in parameters.items()]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[target] = build({name: kwargs.pop(name) for name in parameters})
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*kept, *added])
        return wrapper  # type: ignore[return-value]

    return decorate


def backend_options(verify: bool) -> Callable[[F], F]:
    """Add the backend options (and ``--verify``, defaulting to ``verify``) to a command.

    The decorated function takes ``backend: BackendChoice`` instead of the separate options.
    """
    parameters = {**_PARAMETERS, "verify": _option(
        bool, verify, "Serving self-check before any answer: each adapter changes the output; "
        "the baseline is the same alone and batched with adapters.", **_PANEL)}

    def build(values: dict[str, Any]) -> BackendChoice:
        # Checked when the command starts: a typo must not cost a model load or a run.
        from evalharness.backends.hf import check_device, check_dtype
        from evalharness.backends.registry import check_backend_name

        check_backend_name(values["backend"])
        check_dtype(values["dtype"])
        if values["device"] is not None and values["backend"] != "hf":
            raise UserError(f"--device is a setting of --backend hf; --backend "
                            f"{values['backend']} places the model itself. Fix: omit --device "
                            "(or pass --backend hf).")
        check_device(values["device"])
        endpoints = tuple(values["endpoint"] or ())
        twice = sorted({url for url in endpoints if endpoints.count(url) > 1})
        if twice:
            raise UserError(f"--endpoint {twice[0]} is given more than once. Fix: name each "
                            "server once.")
        if endpoints and values["backend"] != "openai":
            raise UserError(f"--endpoint is a setting of --backend openai; --backend "
                            f"{values['backend']} does not use it. Fix: pass --backend openai "
                            "(or omit --endpoint).")
        options = BackendOptions(endpoints=endpoints,
                                 **{name: values[name] for name in _OPTION_NAMES})
        return BackendChoice(values["backend"], options, values["verify"])

    return _grouped("backend", parameters, build)


_GEN = {"rich_help_panel": "Generation"}
_GEN_PARAMETERS: dict[str, inspect.Parameter] = {
    "max_new_tokens": _option(int, 256, "Most tokens per answer (>= 1).", **_GEN),
    "temperature": _option(float, 0.0, "0 = greedy (deterministic).", **_GEN),
    "top_p": _option(float, 1.0, "Nucleus sampling threshold, in (0, 1].", **_GEN),
    "seed": _option(int, 0, "Sampling seed, >= 0 (each answer's stream derives from it).",
                    **_GEN),
    "stop": _option(list[str] | None, None, "Stop string (repeatable).", **_GEN),
    "on_long_prompt": _option(str, "error", "A prompt longer than the model's context: "
                              "error (refused before generation) or truncate (keep its last "
                              "tokens, leaving room for --max-new-tokens).", **_GEN),
}


def check_number(option: str, value: float, *, low: float, low_open: bool = False,
                 high: float | None = None, what: str) -> None:
    """Raise ``UserError`` unless ``value`` is finite and within its range.

    Click's own ranges accept ``inf`` and ``nan`` (every comparison with nan is false), and
    say nothing of the fix; these messages name the option, the value and the fix.
    """
    if not math.isfinite(value):
        raise UserError(f"{option} {value}: not a finite number. Fix: pass {what}.")
    if value < low or (low_open and value == low) or (high is not None and value > high):
        limits = f"{'above' if low_open else 'at least'} {low:g}"
        limits += f" and at most {high:g}" if high is not None else ""
        raise UserError(f"{option} {value}: must be {limits}. Fix: pass {what}.")


def gen_options(command: F) -> F:
    """Add the generation options to a command, which takes ``gen: GenConfig`` instead."""

    def build(values: dict[str, Any]) -> GenConfig:
        check_number("--max-new-tokens", values["max_new_tokens"], low=1,
                     what="at least 1, e.g. --max-new-tokens 256")
        check_number("--temperature", values["temperature"], low=0.0,
                     what="0 for greedy decoding or a sampling temperature such as 0.7")
        check_number("--top-p", values["top_p"], low=0.0, low_open=True, high=1.0,
                     what="a nucleus threshold such as 0.9 (1 keeps every token)")
        check_number("--seed", values["seed"], low=0, what="a seed >= 0, e.g. --seed 0")
        if values["on_long_prompt"] not in LONG_PROMPT_POLICIES:
            raise UserError(f"--on-long-prompt {values['on_long_prompt']!r} is not a policy. "
                            f"Fix: pass one of {', '.join(LONG_PROMPT_POLICIES)}.")
        return GenConfig(**{**values, "stop": tuple(values["stop"] or ())})

    return _grouped("gen", _GEN_PARAMETERS, build)(command)


_JUDGE = {"rich_help_panel": "Judge"}


def judge_options(default: str) -> Callable[[F], F]:
    """Add the judge options to a command, which takes ``judge_config``: one ``JudgeConfig``,
    or a list of them when ``--judge`` is repeated (a jury).

    The judge is resolved (and its files checked) when the command starts, before any model
    is loaded; an unknown name lists the judges there are.
    """
    parameters = {
        "judge": _option(list[str] | None, None, "Judge name (a folder under the judges dir) "
                         "or a judge folder; `evalharness judges` lists them. Repeat it for a "
                         "jury (each juror's verdicts kept under its name; the headline "
                         f"combines them). Default: {default}.", metavar="NAME", **_JUDGE),
        "judges_dir": _option(Path | None, None, "Folder of judge definitions (default: "
                              "$EVALHARNESS_JUDGES, else the judges shipped with evalharness; "
                              "`evalharness judges` shows where).", **_JUDGE),
        "judge_url": _option(str | None, None, "OpenAI-compatible base URL of the judge, e.g. "
                             "http://127.0.0.1:8001/v1 for a local vLLM.", **_JUDGE),
        "judge_model": _option(str | None, None, "Model name the judge endpoint serves.",
                               **_JUDGE),
        "judge_concurrency": _option(int | None, None, "Judge calls in flight (default: the "
                                     "judge's config).", min=1, **_JUDGE),
        "judge_price": _option(str | None, None, "USD per 1,000 input and output tokens, "
                               "IN,OUT (default: the config's prices; 0 for a --judge-url "
                               "other than the config's own).", **_JUDGE),
        "judge_mode": _option(str | None, None, "online or batch (the provider's Batch API, "
                              "about half price).", **_JUDGE),
        "judge_backend": _option(str | None, None, "http (an OpenAI-compatible endpoint) or "
                                 "vllm (vLLM's offline engine in this process, after the "
                                 "candidates' engine is freed).", **_JUDGE),
    }

    def build(values: dict[str, Any]) -> JudgeConfig | list[JudgeConfig]:
        from evalharness.judging.config import resolve_judge
        from evalharness.judging.prices import parse_price

        price = values["judge_price"]
        jury = [resolve_judge(name, values["judges_dir"]).with_overrides(
            model=values["judge_model"], base_url=values["judge_url"],
            concurrency=values["judge_concurrency"],
            price=parse_price(price) if price is not None else None,
            mode=values["judge_mode"], backend=values["judge_backend"])
            for name in values["judge"] or [default]]
        return jury[0] if len(jury) == 1 else jury

    # The target has its own name: typer would coerce a "judge" argument to its annotation.
    return _grouped("judge_config", parameters, build)


@dataclass(frozen=True)
class EvaluationOptions:
    """What ``compare`` and ``league`` share besides backend, generation and judge."""

    prompts: Path
    ppl_data: Path | None
    base: str | None
    seed: int
    n_boot: int
    run_dir: Path | None
    runs_root: Path

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``evalharness.evaluate.league``/``compare``."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


_RUN = {"rich_help_panel": "Evaluation"}
_EVALUATION_PARAMETERS: dict[str, inspect.Parameter] = {
    "prompts": _option(Path, DEFAULT_PROMPTS, "Prompt set file (default: the shipped "
                       "league-50).", **_RUN),
    "ppl_data": _option(Path | None, None, "Held-out data for perplexity (rows with 'text', or "
                        "'prompt' + 'response'): shows perplexity beside win rate.", **_RUN),
    "base": _option(str | None, None, "Base model (hub id or folder); default: from the "
                    "adapters' configs.", **_RUN),
    "stats_seed": _option(int, 0, "Bootstrap seed (>= 0).", **_RUN),
    "bootstrap": _option(int, 2000, "Bootstrap rounds.", min=100, **_RUN),
    "run_dir": _option(Path | None, None, "Run directory (default: runs/<derived id>, so "
                       "rerunning a command resumes it).", **_RUN),
    "runs_root": _option(Path, Path("runs"), "Where run directories live.", **_RUN),
}


def evaluation_options(command: F) -> F:
    """Add the options ``compare`` and ``league`` share; the command takes
    ``evaluation: EvaluationOptions`` instead."""

    def build(values: dict[str, Any]) -> EvaluationOptions:
        # numpy refuses a negative seed only when the statistics are computed, after every
        # answer and judgment: check it before any of them is made.
        check_number("--stats-seed", values["stats_seed"], low=0,
                     what="a seed >= 0, e.g. --stats-seed 0")
        return EvaluationOptions(
            prompts=values["prompts"], ppl_data=values["ppl_data"], base=values["base"],
            seed=values["stats_seed"], n_boot=values["bootstrap"], run_dir=values["run_dir"],
            runs_root=values["runs_root"])

    return _grouped("evaluation", _EVALUATION_PARAMETERS, build)(command)
