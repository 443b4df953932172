"""A synthetic judged run directory with planted outcomes, written with the real records.

Three models (``baseline`` and the adapters ``qv-r8`` and ``all-r16``), 25 prompts in three
categories, both orders of every game, a round robin between the adapters, one invalid
judgment, perplexity records, and one answer that tries to break out of the HTML.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evalharness.schema import (
    Answer,
    DataRef,
    GenConfig,
    Judgment,
    Manifest,
    ModelSpec,
    PerplexityRecord,
    TokenUsage,
)
from evalharness.store import ANSWERS, JUDGMENTS, PERPLEXITY, JsonlLog, RunDir

N_PROMPTS = 25
CATEGORIES = ("advice", "policy", "programme")
INJECTION = "</script><img src=x onerror=alert(1)>"
INJECTED_PROMPT = "vet-03"
INVALID_PROMPT = "vet-04"
BASELINE = "baseline"
STRONG = "qv-r8"
WEAK = "all-r16"
EXTRA = "mlp-r4"


def pid(i: int) -> str:
    return f"vet-{i + 1:02d}"


def plan(candidate: str, i: int) -> tuple[str | None, str | None]:
    """Who wins prompt ``i`` in (candidate first, baseline first): c, b, t or None."""
    if candidate == STRONG:
        if i == 3:
            return ("c", None)  # one invalid judgment
        if i == 7:
            return ("c", "t")
        return ("b", "b") if i % 5 == 0 else ("c", "c")
    if candidate == EXTRA:
        return ("c", "c") if i % 4 == 1 else ("b", "b")
    if i == 11:
        return ("c", "b")
    return ("c", "c") if i % 2 == 0 else ("b", "b")


def answer_text(model: str, i: int) -> str:
    if model == STRONG and pid(i) == INJECTED_PROMPT:
        return f"A careful answer {INJECTION} with <b>markup</b> & \"quotes\"."
    long = model == STRONG and i % 2 == 0
    body = f"{model} answers question {i + 1} about vocational colleges."
    return body + (" It adds details on apprenticeships and funding." * 3 if long else "")


@dataclass(frozen=True)
class SyntheticRun:
    run_dir: Path
    prompts_file: Path
    judgments: tuple[Judgment, ...]
    answers: tuple[Answer, ...]
    perplexity: tuple[PerplexityRecord, ...]

    def answer(self, model: str, prompt_id: str) -> str:
        return next(a.text for a in self.answers
                    if a.model == model and a.prompt_id == prompt_id)


def _specs(extra: bool) -> tuple[ModelSpec, ...]:
    specs = (
        ModelSpec(name=BASELINE, kind="base", base_model="tiny-llama", base_fingerprint="f" * 64),
        ModelSpec(name=STRONG, kind="adapter", base_model="tiny-llama",
                  base_fingerprint="f" * 64, adapter="/adapters/qv-r8", adapter_sha256="a" * 64,
                  lora_rank=8, lora_alpha=16.0, target_modules=("q_proj", "v_proj"),
                  hyperparameters={"learning_rate": 0.0002, "epochs": 3}),
        ModelSpec(name=WEAK, kind="adapter", base_model="tiny-llama",
                  base_fingerprint="f" * 64, adapter="/adapters/all-r16",
                  adapter_sha256="b" * 64, lora_rank=16, lora_alpha=32.0,
                  target_modules=("k_proj", "o_proj", "q_proj", "v_proj"),
                  hyperparameters={"learning_rate": 0.0001, "epochs": 2}),
    )
    if extra:
        specs += (ModelSpec(name=EXTRA, kind="adapter", base_model="tiny-llama",
                            base_fingerprint="f" * 64, adapter="/adapters/mlp-r4",
                            adapter_sha256="e" * 64, lora_rank=4, lora_alpha=8.0,
                            target_modules=("down_proj", "up_proj"),
                            hyperparameters={"learning_rate": 0.0001, "epochs": 1}),)
    return specs


def _game(i: int, first: str, second: str, winner_model: str | None, n: int,
          lengths: dict[str, int]) -> Judgment:
    if winner_model is None:
        winner, verdict = None, None
    elif winner_model == "tie":
        winner, verdict = "tie", "tie"
    else:
        winner = "A" if winner_model == first else "B"
        verdict = winner
    return Judgment(
        key=f"k-{first}-{second}-{i}", prompt_id=pid(i), judge="pairwise-binary",
        first=first, second=second, verdict=verdict, winner=winner,  # type: ignore[arg-type]
        first_length=lengths[first], second_length=lengths[second],
        category=CATEGORIES[i % 3],
        raw=(f"Game {n}: answer {winner or 'none'} is better because it is specific."
             if winner else "I cannot decide <<garbled>>"),
        usage=TokenUsage(prompt_tokens=300 + i, completion_tokens=20),
        cost_usd=0.0001, attempts=1 if winner else 3,
        error=None if winner else "no verdict found after 3 attempts",
    )


def build_run(root: Path, *, with_perplexity: bool = True,
              extra_adapter: bool = False) -> SyntheticRun:
    """Write the synthetic run under ``root`` and return what was written.

    ``extra_adapter`` adds a third adapter (judged against the baseline only), so the
    perplexity paradox has three candidates and its rank correlations are defined.
    """
    root.mkdir(parents=True, exist_ok=True)
    prompts_file = root / "prompts.jsonl"
    prompts_file.write_text("".join(
        json.dumps({"id": pid(i), "prompt": f"Question {i + 1}: how do polytechnics work?",
                    "reference": f"Reference answer {i + 1}.",
                    "category": CATEGORIES[i % 3]}) + "\n"
        for i in range(N_PROMPTS)))
    run = RunDir(root / "compare-demo-run")
    specs = _specs(extra_adapter)
    adapters = [s.name for s in specs if s.name != BASELINE]
    run.write_manifest(Manifest(
        run_id=run.run_id, command="compare", created="2025-01-01T00:00:00+00:00",
        updated="2025-01-01T01:00:00+00:00",
        versions={"python": "3.11.7", "evalharness": "0.1.0"},
        argv=("evalharness", "compare", "qv-r8", "all-r16", "--prompts", str(prompts_file)),
        backend="fake",
        prompts=DataRef(name="prompts", source=str(prompts_file), sha256="c" * 64,
                        n=N_PROMPTS),
        ppl_data=DataRef(name="eval", source="eval.jsonl", sha256="d" * 64, n=12)
        if with_perplexity else None,
        candidates=specs, baseline=BASELINE, gen=GenConfig(), status="complete",
    ))
    answers = tuple(
        Answer(key=f"a-{s.name}-{i}", prompt_id=pid(i), model=s.name, model_key=s.key,
               text=answer_text(s.name, i), n_tokens=20, finish_reason="stop", seconds=0.1)
        for s in specs for i in range(N_PROMPTS)
    )
    JsonlLog(run.path / ANSWERS, Answer).extend(answers)
    judgments: list[Judgment] = []
    n = 0
    for i in range(N_PROMPTS):
        lengths = {s.name: len(answer_text(s.name, i)) for s in specs}
        for cand in adapters:
            for order, who in enumerate(plan(cand, i)):
                first, second = (cand, BASELINE) if order == 0 else (BASELINE, cand)
                winner = None if who is None else {"c": cand, "b": BASELINE, "t": "tie"}[who]
                n += 1
                judgments.append(_game(i, first, second, winner, n, lengths))
        # Round robin: the strong adapter beats the weak one on 2 prompts of 3.
        for first, second in ((STRONG, WEAK), (WEAK, STRONG)):
            n += 1
            judgments.append(_game(i, first, second, STRONG if i % 3 else WEAK, n, lengths))
    JsonlLog(run.path / JUDGMENTS, Judgment).extend(judgments)
    ppl: list[PerplexityRecord] = []
    if with_perplexity:
        # The strong adapter has the HIGHER perplexity: a paradox pair.
        for s, base_nll in zip(specs, (3.0, 2.6, 2.2, 2.0), strict=False):
            for e in range(12):
                ppl.append(PerplexityRecord(
                    key=f"p-{s.name}-{e}", model=s.name, model_key=s.key, example_id=str(e),
                    nll_sum=base_nll * 10 + (e % 4), n_tokens=10, n_bytes=40))
        JsonlLog(run.path / PERPLEXITY, PerplexityRecord).extend(ppl)
    return SyntheticRun(run.path, prompts_file, tuple(judgments), answers, tuple(ppl))


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRun:
    """The synthetic run (read-only: tests that change it use ``build_run`` themselves)."""
    return build_run(tmp_path_factory.mktemp("report-run"))


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def chromium() -> tuple[Path, Path]:
    """Headless Chromium and its driver (Debian packages), installed once if missing."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        _install_chromium()
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("browser test skipped: /usr/bin/chromium and /usr/bin/chromedriver are "
                    "not installed and `apt-get install chromium chromium-driver` failed "
                    "(run it as root, or `make browser`)")
    return CHROMIUM, CHROMEDRIVER


def _install_chromium() -> None:
    apt = shutil.which("apt-get")
    if apt is None:
        return
    install = [apt, "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def run(command: list[str], timeout: int) -> bool:
        try:
            done = subprocess.run(command, check=False, env=env, capture_output=True,
                                  timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    # An old package index can lack the current chromium; refresh it only when needed.
    if not run(install, 600):
        run([apt, "update"], 300)
        run(install, 600)


def start_browser(chromium: tuple[Path, Path]) -> Any:
    """Headless Chromium driven by selenium, logging the page's console (quit it after)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    driver.set_page_load_timeout(30)
    return driver
