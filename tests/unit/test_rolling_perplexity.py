"""Perplexity of texts longer than the model's context: lm-eval's rolling windows.

Before windowing, a text past ``max_position_embeddings`` was scored in one forward pass
beyond the context: on the kit (context 256) a 711-token text came out 2.0% (baseline) and
4.7% (qv-r8) above lm-eval's ``loglikelihood_rolling``; with windows they agree to 1e-7.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from evalharness.backends.tokens import ScoringWindow, scoring_windows

BOS = -1  # an id no text token has, so the tests can tell the prefix from the text


def _counted(windows: list[ScoringWindow]) -> list[tuple[int, tuple[int, ...]]]:
    """Every counted prediction as (target id, ids read before it), in order."""
    return [(w.ids[i], tuple(w.ids[:i])) for w in windows for i in range(w.first_scored,
                                                                          len(w.ids))]


def test_a_worked_example_by_hand() -> None:
    """BOS + 7 tokens t0..t6, context 3 (so one pass reads at most 3 tokens).

    Predictions are cut into blocks of 3: t0-t2, t3-t5, t6. The first pass reads BOS t0 t1;
    the second reads t2 t3 t4 (t3's prediction sees only t2); the last block, t6 alone, is
    predicted from the 3 tokens before it, t3 t4 t5. Seven predictions, each counted once.
    """
    ids = [BOS, 0, 1, 2, 3, 4, 5, 6]
    windows = scoring_windows(ids, 1, 3)
    assert [(w.ids, w.first_scored) for w in windows] == [
        ([BOS, 0, 1, 2], 1), ([2, 3, 4, 5], 1), ([3, 4, 5, 6], 3)]
    assert _counted(windows) == [
        (0, (BOS,)), (1, (BOS, 0)), (2, (BOS, 0, 1)),
        (3, (2,)), (4, (2, 3)), (5, (2, 3, 4)),
        (6, (3, 4, 5))]


@pytest.mark.parametrize("context", [1, 2, 3, 5, 8, 16])
def test_windows_are_lm_evals_rolling_windows(context: int) -> None:
    """Our windows equal lm-eval's for texts of 1 to 60 tokens: the same ids read, the
    same tokens predicted (``HFLM.loglikelihood_rolling``: ``get_rolling_token_windows``
    with ``context_len=1``, ``make_disjoint_window``, then each pair cut to its last
    ``max_length + 1`` ids in ``_loglikelihood_tokens``)."""
    utils = pytest.importorskip("lm_eval.utils")
    for n in range(1, 61):
        tokens = list(range(n))
        theirs = [((ctx + cont)[-(context + 1):], cont) for ctx, cont in map(
            utils.make_disjoint_window,
            utils.get_rolling_token_windows(tokens, BOS, context, 1))]
        ours = [(w.ids, w.ids[w.first_scored:]) for w in scoring_windows([BOS, *tokens], 1,
                                                                          context)]
        if n <= context:  # within the context: one pass, as before windowing
            assert ours == [([BOS, *tokens], tokens)]
        assert ours == theirs, f"{n} tokens, context {context}"


@pytest.mark.parametrize("context", [1, 2, 4, 7])
def test_every_token_is_predicted_once_from_at_most_context_tokens(context: int) -> None:
    """Independent of lm-eval: the windows' counted predictions are every token from
    ``start`` on, once, in order; each pass reads at most ``context`` tokens, a contiguous
    run ending just before the target; disjoint blocks of ``context`` predictions (the
    stride) mean the k-th token of a block sees k tokens of its own block's run.

    A chat (``start`` > 1) counts exactly the plain-text predictions of its response
    tokens: its prompt is read as context, never scored, however long it is.
    """
    for n in range(2, 40):
        ids = list(range(n))
        plain = _counted(scoring_windows(ids, 1, context))
        assert [target for target, _ in plain] == ids[1:]
        for target, read in plain:
            assert 1 <= len(read) <= context
            assert read == tuple(range(target - len(read), target))
        for start in range(1, n + 1):
            windows = scoring_windows(ids, start, context)
            assert _counted(windows) == [(t, r) for t, r in plain if t >= start]
            assert all(len(w.ids) - 1 <= context for w in windows)


def test_unknown_context_scores_in_one_pass() -> None:
    assert scoring_windows([BOS, 0, 1, 2], 1, None) == [ScoringWindow([BOS, 0, 1, 2], 1)]


def _kit_texts(kit: Any) -> dict[str, str]:
    rows = [json.loads(line) for line in (kit.root / "data" / "eval.jsonl").read_text()
            .splitlines()]
    return {
        # 711 tokens: two full windows of 256 and a last one of 199 predictions.
        "long": " ".join(r["prompt"] + " " + r["response"] for r in rows),
        # 277 tokens: just past the context (a last window of 21 predictions).
        "just-past": "\n".join(r["response"] for r in rows[:20]),
        "short": rows[0]["response"],
    }


@pytest.mark.slow
@pytest.mark.parametrize("adapter", [None, "qv-r8"])
def test_hf_backend_equals_lm_eval_loglikelihood_rolling(kit: Any, adapter: str | None
                                                         ) -> None:
    """The hf backend's NLL of plain texts longer than the kit's 256-token context equals
    ``lm_eval``'s ``HFLM.loglikelihood_rolling`` (measured: relative 1e-7, the float32 sum
    in lm-eval), with the same number of tokens; on the base model and through an adapter.
    The one-pass score it replaces was 2.0% / 4.7% off on the long text."""
    pytest.importorskip("lm_eval")
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from evalharness.backends.base import ScoreRequest
    from evalharness.backends.hf import HFBackend
    from evalharness.candidates import resolve_models

    assert json.loads((kit.root / "base" / "config.json").read_text())[
        "max_position_embeddings"] == 256
    texts = _kit_texts(kit)
    adapter_path = str(kit.root / "adapters" / adapter) if adapter else None
    model = resolve_models([adapter_path or "baseline"], base=str(kit.root / "base"))[0]
    backend = HFBackend(device="cpu", dtype="float32")
    try:
        ours = {s.request.example_id: s.token_nlls for s in backend.score(
            [ScoreRequest(model, name, text, None, name) for name, text in texts.items()])}
    finally:
        backend.close()

    lm = HFLM(pretrained=str(kit.root / "base"), device="cpu", dtype="float32", batch_size=4,
              peft=adapter_path)
    assert lm.max_length == 256 and lm.prefix_token_id == 1  # the kit's context and BOS
    theirs = lm.loglikelihood_rolling(
        [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=i)
         for i, text in enumerate(texts.values())], disable_tqdm=True)
    for (name, text), loglikelihood in zip(texts.items(), theirs, strict=True):
        n_tokens = len(lm.tok_encode(text))
        assert len(ours[name]) == n_tokens, name
        assert sum(ours[name]) == pytest.approx(-loglikelihood, rel=1e-6), name
        # Token perplexity, the figure a user reads, to 1e-4.
        assert math.exp(sum(ours[name]) / n_tokens) == pytest.approx(
            math.exp(-loglikelihood / n_tokens), abs=1e-4), name
    assert len(lm.tok_encode(texts["long"])) == 711
    assert len(lm.tok_encode(texts["just-past"])) == 277

    # What windowing fixes: the same long text in one pass past the context.
    ids = torch.tensor([[1, *lm.tok_encode(texts["long"])]])
    with torch.no_grad():
        logprobs = torch.log_softmax(lm.model(ids).logits.float()[0, :-1], dim=-1)
    one_pass = -float(logprobs.gather(-1, ids[0, 1:].unsqueeze(-1)).sum())
    assert abs(one_pass / -theirs[0] - 1) > 0.01


def test_texts_within_the_context_score_as_one_pass(kit: Any) -> None:
    """Every example of the kit's held-out data (chat pairs and, as plain text, their
    responses) fits the context: its NLLs are one pass over its ids, as before windows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalharness.backends.base import ScoreRequest
    from evalharness.backends.hf import HFBackend
    from evalharness.backends.tokens import scoring_ids
    from evalharness.candidates import resolve_models
    from evalharness.perplexity import load_eval_data

    examples = load_eval_data(Path(kit.root) / "data" / "eval.jsonl").examples
    requests = [(e.id, e.text, e.context) for e in examples]
    requests += [(f"{e.id}-plain", e.text, None) for e in examples]
    model = resolve_models(["baseline"], base=str(kit.root / "base"))[0]
    backend = HFBackend(device="cpu", dtype="float32")
    try:
        ours = {s.request.example_id: s.token_nlls for s in backend.score(
            [ScoreRequest(model, i, text, context, i) for i, text, context in requests])}
    finally:
        backend.close()
    tokenizer = AutoTokenizer.from_pretrained(kit.root / "base")
    reference = AutoModelForCausalLM.from_pretrained(kit.root / "base",
                                                     dtype=torch.float32).eval()
    for example_id, text, context in requests:
        scoring = scoring_ids(tokenizer, text, context)
        assert len(scoring.ids) - 1 <= 256
        ids = torch.tensor([scoring.ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(reference(ids).logits.float()[0, :-1], dim=-1)
        nlls = -logprobs.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)[scoring.start - 1:]
        assert ours[example_id] == pytest.approx(nlls.tolist(), rel=1e-5, abs=1e-6)


def test_ppl_records_the_window_in_records_and_manifest(kit: Any, cli: Any,
                                                        tmp_path: Path) -> None:
    """A user running `ppl` on texts past the context sees, in the manifest, that they were
    scored in rolling windows, with the window and stride; a text that fits says nothing."""
    from tests.helpers import read_jsonl, write_jsonl

    data = write_jsonl(tmp_path / "long.jsonl", [{"id": name, "text": text}
                                                 for name, text in _kit_texts(kit).items()])
    result = cli("ppl", "baseline", "--base", kit.base, "--data", data)
    assert result.code == 0, result.text
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "manifest.json").exists()]
    manifest = json.loads((run / "manifest.json").read_text())
    context = json.loads((Path(kit.base) / "config.json").read_text())["max_position_embeddings"]
    assert manifest["ppl_windows"] == {"window": context, "stride": context, "texts": 2}
    windows = {r["example_id"]: r["window"] for r in read_jsonl(run / "perplexity.jsonl")}
    assert windows == {"long": context, "just-past": context, "short": None}


def test_a_single_pass_record_from_before_windows_is_recomputed(kit: Any, cli: Any,
                                                               tmp_path: Path) -> None:
    """A run scored before rolling windows existed holds, for a text past the context, one
    pass beyond ``max_position_embeddings`` (2-5% off). Rerun, that record is not reused:
    every record is rescored under the current scoring and the long text gets its window."""
    from evalharness.keys import content_key
    from tests.helpers import read_jsonl, write_jsonl

    texts = _kit_texts(kit)
    data = write_jsonl(tmp_path / "long.jsonl", [{"id": name, "text": text}
                                                 for name, text in texts.items()])
    assert cli("ppl", "baseline", "--base", kit.base, "--data", data).code == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "manifest.json").exists()]
    records = read_jsonl(run / "perplexity.jsonl")
    manifest = json.loads((run / "manifest.json").read_text())
    # Rewrite the run as the old version left it: old keys, no window, a wrong NLL.
    old = []
    for r in records:
        key = content_key({"engine": manifest["engine"], "model": r["model_key"],
                           "text": texts[str(r["example_id"])], "context": None})
        old.append({**r, "key": key, "window": None, "nll_sum": float(r["nll_sum"]) * 1.03})
    write_jsonl(run / "perplexity.jsonl", old)
    result = cli("ppl", "baseline", "--base", kit.base, "--data", data, "--run-dir", run)
    assert result.code == 0, result.text
    assert "3 computed now" in result.text
    fresh = {r["example_id"]: r for r in read_jsonl(run / "perplexity.jsonl")[len(old):]}
    assert fresh["long"]["window"] is not None
    assert {k: r["nll_sum"] for k, r in fresh.items()} == pytest.approx(
        {str(r["example_id"]): r["nll_sum"] for r in records}, rel=1e-6)
