"""The perplexity paradox: does lower perplexity mean the judge prefers the adapter?

Perplexity is cheap and needs no judge, so it is tempting to pick adapters by it. It measures
how well a model predicts reference text, not how good its answers are, and the two can
disagree. For a league this module puts them side by side:

- a table of candidate, perplexity (per token and bits per byte) and win rate with interval;
- Spearman and Kendall (tau-b) rank correlation between perplexity and win rate, with
  bootstrap intervals over prompts (perplexity is held fixed; the win rates are resampled).
  **Negative means they agree**: lower perplexity, higher win rate;
- the paradox pairs: A has lower perplexity than B, yet B wins more, with the interval of
  B's win-rate lead (paired: the same resampled prompts for both) and the paired sign test,
  Holm-adjusted over every pair of candidates in the table. A pair is a *clear reversal*
  when that adjusted test rejects: the same family and test as the adapter-against-adapter
  table, so the two never disagree about which pairs differ;
- one plain sentence that says what the data support.

Bits per byte is the default ranking metric: it does not depend on the tokenizer, so it
compares a merged model with another tokenizer fairly; for adapters on one base it ranks
exactly as token perplexity does. Perplexities from elsewhere may give only one of the two
(a sweep that published eval loss has no bits per byte): the ranks then use the one every
candidate has (``ranking_metric``), and ``Paradox.metric`` says which.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from evalharness.stats.games import PromptScores, score_matrix
from evalharness.stats.headtohead import sign_test
from evalharness.stats.intervals import (
    Interval,
    bootstrap_weights,
    percentile_interval,
    weighted_means,
    wilson_scores,
)
from evalharness.stats.multiple import holm

FloatArray = npt.NDArray[np.float64]
Metric = Literal["token_ppl", "bits_per_byte"]


class Perplexity(NamedTuple):
    """A candidate's perplexity on the evaluation text."""

    token_ppl: float
    """exp(mean NLL per token)."""
    bits_per_byte: float
    """Total NLL in bits divided by the UTF-8 bytes scored."""


@dataclass(frozen=True)
class ParadoxRow:
    """One candidate: perplexity beside win rate."""

    candidate: str
    """The candidate."""
    token_ppl: float
    """Token perplexity."""
    bits_per_byte: float
    """Bits per byte."""
    win_rate: float
    """Win rate against the baseline (ties as half)."""
    interval: Interval
    """Wilson interval of the win rate."""
    n_prompts: int
    """Prompts behind the win rate."""


@dataclass(frozen=True)
class Correlation:
    """A rank correlation and its bootstrap interval."""

    estimate: float
    """The coefficient on the data (NaN with fewer than 3 candidates)."""
    interval: Interval
    """Percentile bootstrap interval over prompts."""


@dataclass(frozen=True)
class ParadoxPair:
    """``lower`` has the lower perplexity, yet ``higher`` has the higher win rate."""

    lower: str
    """The candidate with lower perplexity (and lower win rate)."""
    higher: str
    """The candidate with higher perplexity (and higher win rate)."""
    perplexity_lower: float
    """``lower``'s value of the ranking metric."""
    perplexity_higher: float
    """``higher``'s value of the ranking metric."""
    difference: float
    """Win rate of ``higher`` minus win rate of ``lower`` (positive)."""
    interval: Interval
    """Paired bootstrap interval of ``difference`` (not adjusted for the many pairs)."""
    p_value: float
    """Exact sign test on the prompts where one of the two scored higher."""
    p_holm: float
    """``p_value`` Holm-adjusted over every pair of candidates in the table."""
    significant: bool
    """A clear reversal: ``p_holm`` below 1 - confidence (the judge really preferred
    ``higher`` after allowing for all the pairs looked at)."""


@dataclass(frozen=True)
class Paradox:
    """Perplexity against win rate for a league."""

    metric: Metric
    """Perplexity measure the ranks use."""
    rows: tuple[ParadoxRow, ...]
    """Candidates, lowest perplexity first."""
    spearman: Correlation
    """Spearman's rho between the metric and win rate (negative = agreement)."""
    kendall: Correlation
    """Kendall's tau-b between the metric and win rate (negative = agreement)."""
    pairs: tuple[ParadoxPair, ...]
    """Paradox pairs, largest win-rate reversal first."""
    sentence: str
    """What the data support, in plain words."""


def ranking_metric(values: Iterable[Perplexity]) -> Metric:
    """Bits per byte when every candidate has it (not NaN), else token perplexity.

    >>> ranking_metric([Perplexity(2.0, 0.5), Perplexity(1.6, float("nan"))])
    'token_ppl'
    >>> ranking_metric([Perplexity(2.0, 0.5)])
    'bits_per_byte'
    """
    return "bits_per_byte" if all(not np.isnan(v.bits_per_byte) for v in values) \
        else "token_ppl"


def spearman_rows(x: FloatArray, y: FloatArray) -> FloatArray:
    """Spearman's rho of fixed ``x`` (k,) with each row of ``y`` (rounds x k).

    >>> import numpy as np
    >>> spearman_rows(np.array([1.0, 2, 3]), np.array([[3.0, 2, 1], [1, 3, 2]])).tolist()
    [-1.0, 0.5]
    """
    rx = sps.rankdata(x)
    ry = sps.rankdata(y, axis=1)
    cx = rx - rx.mean()
    cy = ry - ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho: FloatArray = (cy @ cx) / np.sqrt((cy * cy).sum(axis=1) * (cx @ cx))
    return rho


def kendall_rows(x: FloatArray, y: FloatArray) -> FloatArray:
    """Kendall's tau-b of fixed ``x`` (k,) with each row of ``y`` (rounds x k).

    >>> import numpy as np
    >>> kendall_rows(np.array([1.0, 2, 3]), np.array([[3.0, 2, 1], [1, 3, 2]])).round(4).tolist()
    [-1.0, 0.3333]
    """
    iu = np.triu_indices(x.size, k=1)
    sx = np.sign(x[:, None] - x[None, :])[iu]
    sy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        tau: FloatArray = (sy @ sx) / np.sqrt((sx * sx).sum() * (sy * sy).sum(axis=1))
    return tau


def _fmt(c: Correlation, confidence: float) -> str:
    level = f"{100 * confidence:g}%"
    return f"{c.estimate:+.2f}, {level} CI [{c.interval.low:+.2f}, {c.interval.high:+.2f}]"


def _sentence(
    spearman: Correlation, pairs: Sequence[ParadoxPair], k: int, metric: str, confidence: float
) -> str:
    if k < 3 or np.isnan(spearman.estimate):
        return (
            f"With {k} candidate(s) that have both perplexity and a win rate, a rank "
            "correlation says nothing; compare the head-to-head results directly."
        )
    strong = sum(p.significant for p in pairs)
    tail = (
        f" {strong} of {len(pairs)} paradox pair(s) are clear reversals (the judge "
        "preferred the higher-perplexity adapter beyond the noise: paired sign test, "
        "Holm-adjusted over all pairs)."
        if pairs
        else ""
    )
    what = f"lower {metric.replace('_', ' ')}"
    rho = _fmt(spearman, confidence)
    if spearman.interval.high < 0:
        return (
            f"On these prompts {what} went with a higher win rate (Spearman {rho}): "
            f"perplexity ranked the adapters much as the judge did.{tail}"
        )
    if spearman.interval.low > 0:
        return (
            f"On these prompts {what} went with a LOWER win rate (Spearman {rho}): "
            f"perplexity points the wrong way here; choose adapters by win rate.{tail}"
        )
    return (
        f"The data cannot tell whether {what} goes with a higher win rate (Spearman "
        f"{rho} includes 0): do not choose adapters by perplexity alone on these "
        f"prompts.{tail}"
    )


def perplexity_paradox(
    scores: Sequence[PromptScores],
    perplexity: Mapping[str, Perplexity | tuple[float, float]],
    *,
    metric: Metric | None = None,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> Paradox:
    """Perplexity beside win rate, their rank correlations, and the paradox pairs.

    Args:
        scores: each candidate's per-prompt scores against the baseline.
        perplexity: candidate name -> (token perplexity, bits per byte); candidates missing
            on either side are left out.
        metric: which perplexity the ranks use (default: ``ranking_metric`` of the
            candidates used).
        seed: bootstrap seed.
        n_boot: bootstrap rounds.
        confidence: interval level.
    """
    used = [s for s in scores if s.candidate in perplexity and s.n_prompts > 0]
    ppl = {name: Perplexity(*value) for name, value in perplexity.items()}
    names = [s.candidate for s in used]
    if metric is None:
        metric = ranking_metric(ppl[n] for n in names)
    prompts, matrix = score_matrix(used)
    x = np.array([getattr(ppl[n], metric) for n in names], dtype=np.float64)
    rates = np.array([s.score.mean() for s in used], dtype=np.float64)
    boot = weighted_means(bootstrap_weights(len(prompts), n_boot, seed), matrix)
    k = len(names)
    if k >= 3:
        spearman = Correlation(
            float(sps.spearmanr(x, rates).statistic),
            percentile_interval(spearman_rows(x, boot), confidence),
        )
        kendall = Correlation(
            float(sps.kendalltau(x, rates).statistic),
            percentile_interval(kendall_rows(x, boot), confidence),
        )
    else:
        spearman = kendall = Correlation(float("nan"), Interval(float("nan"), float("nan")))
    # Sign tests over every pair (the family Holm adjusts for), as paired.paired_comparison
    # counts them: prompts both were judged on, where one scored higher.
    every = [(i, j) for i in range(k) for j in range(i + 1, k)]
    p_raw = []
    for i, j in every:
        both = ~np.isnan(matrix[i]) & ~np.isnan(matrix[j])
        diff = matrix[i, both] - matrix[j, both]
        p_raw.append(sign_test(int((diff > 0).sum()), int((diff < 0).sum())))
    adjusted = dict(zip(every, zip(p_raw, holm(p_raw), strict=True), strict=True))
    pairs = []
    for i in range(k):
        for j in range(k):
            if x[i] < x[j] and rates[j] > rates[i]:
                p_value, p_holm = adjusted[(min(i, j), max(i, j))]
                pairs.append(
                    ParadoxPair(
                        lower=names[i],
                        higher=names[j],
                        perplexity_lower=float(x[i]),
                        perplexity_higher=float(x[j]),
                        difference=float(rates[j] - rates[i]),
                        interval=percentile_interval(boot[:, j] - boot[:, i], confidence),
                        p_value=p_value,
                        p_holm=p_holm,
                        significant=p_holm < 1.0 - confidence,
                    )
                )
    pairs.sort(key=lambda p: (-p.difference, p.lower, p.higher))
    rows = [
        ParadoxRow(
            candidate=s.candidate,
            token_ppl=ppl[s.candidate].token_ppl,
            bits_per_byte=ppl[s.candidate].bits_per_byte,
            win_rate=float(s.score.mean()),
            interval=wilson_scores(s.score, confidence),
            n_prompts=s.n_prompts,
        )
        for s in used
    ]
    rows.sort(key=lambda r: (getattr(r, metric), r.candidate))
    return Paradox(
        metric=metric,
        rows=tuple(rows),
        spearman=spearman,
        kendall=kendall,
        pairs=tuple(pairs),
        sentence=_sentence(spearman, pairs, k, metric, confidence),
    )
