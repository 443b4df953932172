"""Per-model perplexity and hyperparameters from a file made elsewhere (``stats --runs FILE``).

A published sweep gives, per run, a win rate (the judgments) and an eval loss or perplexity
and its settings (a table). This reads the table, one row per model, from CSV or JSON lines
(``rows.read_rows``, so errors name ``file:line``):

- ``model`` (required): the name the judgments use for the run.
- perplexity, any of: ``perplexity`` (token perplexity, >= 1), ``eval_loss`` (mean NLL per
  token in nats, as transformers logs it; perplexity = exp(eval_loss)), ``bits_per_byte``.
  A row giving both ``perplexity`` and ``eval_loss`` must have them agree to 0.1%.
- every other column is a hyperparameter (``learning_rate``, ``lora_rank`` or ``r`` or
  ``rank``, ``lora_alpha`` or ``alpha``, ``epochs``, ``target_modules``, ...); CSV cells that
  read as numbers are numbers. ``train_loss`` is kept but never grouped by.

The paradox ranks by bits per byte when every run gives it, else by token perplexity (see
``paradox.ranking_metric``), so a sweep that published only eval loss is analysed on that.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.errors import UserError
from evalharness.rows import Row, read_rows
from evalharness.stats.hyperparams import Scalar, normalize
from evalharness.stats.paradox import Perplexity

NAME = "model"
MEASURES = ("perplexity", "eval_loss", "bits_per_byte")
_ALIASES = {"rank": "lora_rank", "alpha": "lora_alpha"}
"""Short names a sweep table uses, beyond those ``hyperparams.normalize`` knows."""
_FIX = ("Fix: one row per model: model, then perplexity, eval_loss or bits_per_byte, then "
        "hyperparameter columns (docs/statistics.md, 'A published sweep from the command line').")


@dataclass(frozen=True)
class RunsTable:
    """What a runs file says about each model."""

    perplexity: dict[str, Perplexity]
    """Model -> (token perplexity, bits per byte); NaN where the file gives no such value.
    Models whose row gives no perplexity measure are absent."""
    hyperparameters: dict[str, dict[str, Scalar]]
    """Model -> its hyperparameter columns (models with none are absent)."""
    where: dict[str, str]
    """Model -> ``file:line`` of its row."""
    measures: tuple[str, ...]
    """The perplexity columns the file uses, in ``MEASURES`` order."""


def _number(row: Row, column: str) -> float | None:
    value = row.fields.get(column)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        got = json.dumps(value, default=str)[:40]
        raise UserError(f"{row.where}: '{column}' is {got}, not a number. {_FIX}")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{row.where}: '{column}' is {str(value)[:40]!r}, not a number. "
                        f"{_FIX}") from None
    if not math.isfinite(number):
        raise UserError(f"{row.where}: '{column}' is {value!r}; it must be a finite number. "
                        f"{_FIX}")
    return number


def _cell(value: Any) -> Scalar | None:
    """A hyperparameter cell: CSV text that reads as a number becomes that number."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                number = kind(value)
            except ValueError:
                continue
            return number if math.isfinite(number) else value
        return value
    return value if isinstance(value, int | float | str) else None


def _perplexity(row: Row) -> Perplexity | None:
    ppl, loss, bpb = (_number(row, column) for column in MEASURES)
    if ppl is not None and ppl < 1.0:
        raise UserError(f"{row.where}: perplexity {ppl:g} is below 1, which no model has "
                        "(perplexity = exp(mean NLL) >= 1). Fix: give token perplexity here, "
                        "or the loss in 'eval_loss'.")
    if loss is not None and loss < 0.0:
        raise UserError(f"{row.where}: eval_loss {loss:g} is negative; a mean negative "
                        "log-likelihood is >= 0. Fix: give the eval loss in nats per token.")
    if bpb is not None and bpb <= 0.0:
        raise UserError(f"{row.where}: bits_per_byte {bpb:g} must be above 0. {_FIX}")
    if ppl is not None and loss is not None and abs(math.exp(loss) - ppl) > 1e-3 * ppl:
        raise UserError(
            f"{row.where}: perplexity {ppl:g} and eval_loss {loss:g} disagree (exp(eval_loss) "
            f"= {math.exp(loss):.4f}). Fix: keep one of the two columns, or correct the value "
            "(eval_loss must be the mean NLL per token in nats).")
    token = ppl if ppl is not None else math.exp(loss) if loss is not None else None
    if token is None and bpb is None:
        return None
    return Perplexity(math.nan if token is None else token, math.nan if bpb is None else bpb)


def _hyperparameters(row: Row) -> dict[str, Scalar]:
    raw: dict[str, Any] = {}
    for column, value in row.fields.items():
        if column == NAME or column in MEASURES:
            continue
        cell = _cell(value)
        if cell is None and not (isinstance(value, list) and all(
                isinstance(v, str) for v in value)):
            raise UserError(f"{row.where}: hyperparameter '{column}' is "
                            f"{json.dumps(value, default=str)[:40]}; it must be a number or "
                            f"text. {_FIX}")
        name = _ALIASES.get(column, column)
        if isinstance(cell, str) and name == "target_modules":
            cell = ",".join(sorted(m.strip() for m in cell.split(",")))  # as adapters list them
        raw[name] = value if cell is None else cell
    return normalize(raw)


def read_runs(path: Path) -> RunsTable:
    """The per-model perplexity and hyperparameters in ``path`` (CSV or JSON lines).

    Raises:
        UserError: naming ``file:line`` for a row without a model, a model listed twice, a
            value that is not a number, a perplexity below 1, a negative loss, perplexity and
            eval loss that disagree, or runs that give different perplexity measures.
    """
    rows = read_rows(path, "runs file")
    if not rows:
        raise UserError(f"{path}: the runs file holds no rows. {_FIX}")
    perplexity: dict[str, Perplexity] = {}
    hyper: dict[str, dict[str, Scalar]] = {}
    where: dict[str, str] = {}
    for row in rows:
        name = row.fields.get(NAME)
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)  # as a CSV cell reads it
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"{row.where}: no '{NAME}' (the name the judgments use for the "
                            f"run). {_FIX}")
        if name in where:
            raise UserError(f"{row.where}: model '{name}' is listed again (first at "
                            f"{where[name]}). Fix: keep one row per model.")
        where[name] = row.where
        found = _perplexity(row)
        if found is not None:
            perplexity[name] = found
        values = _hyperparameters(row)
        if values:
            hyper[name] = values
    _same_measure(perplexity, where)
    used = tuple(m for m in MEASURES if any(m in rows_.fields for rows_ in rows))
    return RunsTable(perplexity, hyper, where, used)


def _same_measure(perplexity: dict[str, Perplexity], where: dict[str, str]) -> None:
    """Refuse a table where no one measure covers every run: ranks need one measure."""
    no_token = [m for m, p in perplexity.items() if math.isnan(p.token_ppl)]
    no_bpb = [m for m, p in perplexity.items() if math.isnan(p.bits_per_byte)]
    if no_token and no_bpb:
        raise UserError(
            f"{where[no_token[0]]}: gives bits_per_byte but no perplexity, while "
            f"{where[no_bpb[0]]} gives perplexity (or eval_loss) but no bits_per_byte; runs "
            "are ranked by one measure. Fix: give the same measure for every run.")


def check_models(table: RunsTable, candidates: list[str], baseline: str,
                 source: Path) -> list[str]:
    """Match the runs file's models with the judgments'.

    A model in the file that the judgments never name is an error: it is almost always a
    misspelt name, and its row would silently count for nothing. The baseline's row is
    accepted (it has no win rate, so it is not in the tables). A candidate without a row is
    fine but said: it is left out of the perplexity and hyperparameter tables.

    Returns:
        Warnings to show (empty when every candidate has a row).

    Raises:
        UserError: naming the first unknown model's ``file:line`` and the judged models.
    """
    known = set(candidates) | {baseline}
    unknown = [name for name in table.where if name not in known]
    if unknown:
        raise UserError(
            f"{table.where[unknown[0]]}: model '{unknown[0]}' is not in the judgments"
            + (f" (nor are {', '.join(unknown[1:])})" if len(unknown) > 1 else "")
            + f"; the judged models are {', '.join(sorted(known))}. Fix: use the names the "
            f"judgments use in {source.name}, or delete the rows of runs that were not judged.")
    missing = [name for name in candidates if name not in table.where]
    if not missing:
        return []
    return [f"{source}: no row for {', '.join(missing)}: left out of the perplexity and "
            "hyperparameter tables (their win rates are still shown)."]
