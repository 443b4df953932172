"""Audit thresholds: read from TOML data files, never written in code.

The defaults ship as ``evalharness/audit/data/*.toml``, one file per detector module, each
holding one table per detector (``[duplicate-answers]``, ...). A user's file
(``evalharness audit --thresholds FILE``, or ``thresholds=`` in the Python API) overrides
any key of any table; docs/audit.md lists them all. A detector reads its table into its own
pydantic model, so an unknown key or a wrong type is an error that names the file and key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from evalharness.errors import UserError

DATA_DIR = Path(__file__).with_name("data")
"""Where the shipped thresholds and the attack catalogue live."""

Table = dict[str, Any]
T = TypeVar("T", bound="Thresholds")


class Thresholds(BaseModel):
    """Base of every detector's thresholds: frozen, and unknown keys are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _read_toml(path: Path) -> dict[str, Table]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such thresholds file. Fix: pass an existing TOML file "
                        "(docs/audit.md shows one).") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: cannot read the thresholds ({exc}). Fix: write it as TOML, "
                        "one [table] per detector (docs/audit.md).") from None
    for name, table in data.items():
        if not isinstance(table, dict):
            raise UserError(f"{path}: '{name}' is not a [table]. Fix: put each detector's "
                            "thresholds under its own [name] table (docs/audit.md).")
    return data


class AuditConfig:
    """Every detector's thresholds: the shipped defaults with a user's overrides on top."""

    def __init__(self, override: Path | None = None) -> None:
        self.tables: dict[str, Table] = {}
        self.sources: dict[str, Path] = {}
        for path in sorted(DATA_DIR.glob("*.toml")):
            for name, table in _read_toml(path).items():
                self.tables[name] = dict(table)
                self.sources[name] = path
        self.override = override
        if override is not None:
            for name, table in _read_toml(override).items():
                if name not in self.tables:
                    raise UserError(
                        f"{override}: [{name}] is not a detector. Fix: use one of "
                        f"{', '.join(sorted(self.tables))}.")
                self.tables[name].update(table)
                self.sources[name] = override

    def section(self, name: str, model: type[T]) -> T:
        """The thresholds of detector ``name``, read into ``model``.

        Raises:
            UserError: a missing table, an unknown key or a wrong value (file and key named).
        """
        if name not in self.tables:
            raise UserError(f"the audit thresholds have no [{name}] table. Fix: add it to "
                            f"a file in {DATA_DIR} (or reinstall evalharness).")
        try:
            return model.model_validate(self.tables[name])
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise UserError(f"{self.sources[name]}: [{name}] {problems}. Fix: correct the "
                            "value (docs/audit.md lists each key).") from None

    def fingerprint(self) -> Mapping[str, Table]:
        """Every table, as the audit's cache key includes it (changed thresholds recompute)."""
        return {name: self.tables[name] for name in sorted(self.tables)}
