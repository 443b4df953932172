"""``evalharness report RUN``: the Markdown or HTML report of a judged run.

``write_report`` is the Python API; ``register`` adds the command to the typer app.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from evalharness.errors import UserError
from evalharness.store import RunDir, resolve_run

if TYPE_CHECKING:
    from evalharness.report.data import ReportData

Format = Literal["md", "html"]
FORMATS: tuple[Format, ...] = ("md", "html")


def check_format(value: str) -> Format:
    """``value`` as a report format.

    >>> check_format("html")
    'html'

    Raises:
        UserError: an unknown format, naming the ones there are.
    """
    for known in FORMATS:
        if value == known:
            return known
    raise UserError(f"--format {value!r} is not a report format. Fix: use --format md "
                    "(Markdown, for pull requests and papers) or --format html (one "
                    "self-contained page with plots and a prompt viewer).")


def write_report(
    run_dir: Path | str,
    format: str = "md",
    *,
    out: Path | str | None = None,
    seed: int = 0,
    n_boot: int = 2000,
) -> Path:
    """Write the report of a judged run and return where it went.

    Args:
        run_dir: the run directory (made by ``compare``/``league`` or judged by ``judge``).
        format: ``md`` or ``html``.
        out: where to write (default: ``RUN/report.md`` or ``RUN/report.html``).
        seed: bootstrap seed (the same as ``evalharness stats --seed`` gives equal numbers).
        n_boot: bootstrap rounds.

    Raises:
        UserError: not a run directory, a run without judgments, an unknown format.
    """
    chosen = check_format(format)
    check_bootstrap(seed, n_boot)
    from evalharness.report.data import load_report_data

    data = load_report_data(run_dir, seed=seed, n_boot=n_boot)
    target = _target(data, chosen, out)
    run = RunDir(data.run_dir)
    if target.resolve().parent != run.path.resolve():
        return write_rendered(data, chosen, target)  # the run itself is not written
    if not os.access(run.path, os.W_OK | os.X_OK):
        raise _cannot_write(target, "its folder is not writable")
    with run.lock():  # not while a command is still writing the run (or its reports)
        return write_rendered(data, chosen, target)


def check_bootstrap(seed: int, n_boot: int) -> None:
    """Refuse bootstrap settings that cannot give an interval, before any work.

    Raises:
        UserError: fewer than 100 rounds, or a negative seed.
    """
    if n_boot < 100:
        raise UserError(f"--bootstrap {n_boot} is too few rounds for a 95% interval. "
                        "Fix: use at least 100 (default 2000).")
    if seed < 0:
        raise UserError(f"--seed {seed}: the bootstrap seed must be 0 or more. Fix: pass a "
                        "non-negative integer (default 0).")


def _cannot_write(target: Path, why: str) -> UserError:
    return UserError(f"cannot write the report {target} ({why}). Fix: make its folder "
                     "writable, or pass --out with a file in a folder you can write.")


def _target(data: ReportData, format: Format, out: Path | str | None) -> Path:
    return Path(out) if out is not None else data.run_dir / f"report.{format}"


def write_rendered(data: ReportData, format: Format, out: Path | str | None = None) -> Path:
    """Render ``data`` (already loaded) as ``format`` and write it; return the path."""
    if format == "md":
        from evalharness.report.markdown import render_markdown

        text = render_markdown(data)
    else:
        from evalharness.report.html import render_html

        text = render_html(data)
    target = _target(data, format, out)
    if target.is_dir():
        raise UserError(f"--out {target} is a folder. Fix: give a file name, e.g. "
                        f"{target / f'report.{format}'}")
    _replace_file(target, text)
    return target


def _replace_file(target: Path, text: str) -> None:
    # Not store.atomic_write_text: its temporary file is private (0600), and a report is
    # meant to be shared; a plain open() honours the umask.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _cannot_write(target, exc.strerror or str(exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def report(
    run: Annotated[str, typer.Argument(help="A run directory, or a run id under --runs-root.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="md (Markdown) or html "
                                         "(self-contained page with plots).")] = "md",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: "
                                             "RUN/report.md or RUN/report.html).")] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap rounds.")] = 2000,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="Where run directories "
                                            "live.")] = Path("runs"),
) -> None:
    """Write a judged run's report: Markdown tables, or one HTML page with plots."""
    check_format(format_)  # before any reading: a typo costs nothing
    path = write_report(resolve_run(run, runs_root).path, format_, out=out, seed=seed,
                        n_boot=bootstrap)
    typer.echo(f"report written to {path}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report)
