"""``evalharness label RUN``: blind pairwise labelling of a run's games in the browser.

``register`` adds the command to the typer app. Parsing and printing only: the server is
``evalharness.label.server.serve``. Messages are plain text (``typer.echo``): paths and
names come from the user.
"""

from __future__ import annotations

import sys
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evalharness.label.games import PLANS
from evalharness.label.security import LOOPBACK_NAMES

if TYPE_CHECKING:
    from evalharness.label.server import LabelServer


def label_command(
    run: Annotated[str, typer.Argument(help="A run directory, or a run id under --runs-root.")],
    annotator: Annotated[list[str], typer.Option(
        "--annotator", "-a", metavar="NAME", help="Your name (letters, digits, - _ .; up to "
        "40): labels are stored as judgments of the judge human:<name>. Repeat to serve "
        "several people.")],
    plan: Annotated[str, typer.Option(
        "--plan", metavar="PLAN", help=f"Order the games are offered in: {', '.join(PLANS)} "
        "(the judge's disputed games first).")] = "random",
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Offer at most this many games (the plan's first N).")] = None,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the plan's order and of the left/right sides.")] = 0,
    port: Annotated[int, typer.Option(
        "--port", min=0, max=65535, help="Port to serve on; 0 picks a free one.")] = 0,
    host: Annotated[str, typer.Option(
        "--host", help="Address to serve on. Keep the default: anyone who can reach "
        "another address can label.")] = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Print the address instead of opening a browser.")] = False,
    runs_root: Annotated[Path, typer.Option(
        "--runs-root", help="Where run directories live.")] = Path("runs"),
) -> None:
    """Label a run's games by hand, blind: which of two answers is better (A / B / tie).

    Opens a page on this machine showing one prompt and two answers (sides randomised, no
    model names). Each label is saved at once in RUN/judgments.jsonl as a judgment of
    human:<name>; rerunning the command continues where you stopped. Stop with Ctrl-C.
    """
    from evalharness.label.server import serve
    from evalharness.store import resolve_run

    target = resolve_run(run, runs_root)
    server = serve(target.path, annotator, plan=plan, seed=seed, limit=limit, host=host,
                   port=port, argv=sys.argv)
    try:
        _announce(server, target.path, plan, host)
        if not no_browser:
            webbrowser.open(server.url)
        server.wait()
    finally:
        server.shutdown()
        _farewell(server, target.path)


def _announce(server: LabelServer, run: Path, plan: str, host: str) -> None:
    progress = server.progress()
    what = "games the judge played" if server.judged else "candidate-vs-baseline games"
    typer.echo(f"labelling {run}: {progress[0].total} {what} (plan {plan})")
    for p in progress:
        typer.echo(f"  {p.annotator}: {p.labelled} labelled, {p.total - p.labelled} to go")
    if len(progress) == 1:
        typer.echo(f"open {server.url}")
    else:
        for p in progress:
            typer.echo(f"  {p.annotator} opens {server.url_for(p.annotator)}")
    if host not in LOOPBACK_NAMES:
        typer.echo(f"warning: serving on {host}: anyone who can reach it can label.", err=True)
    typer.echo("each label is saved as it is made; stop with Ctrl-C")


def _farewell(server: LabelServer, run: Path) -> None:
    progress = server.progress()
    saved = sum(p.saved for p in progress)
    standing = "; ".join(f"{p.annotator}: {p.labelled} of {p.total} labelled"
                         for p in progress)
    typer.echo(f"saved {saved} label{'s' if saved != 1 else ''} ({standing})")
    typer.echo(f"next: evalharness agree {run}")


def register(app: typer.Typer) -> None:
    """Add the ``label`` command to ``app``."""
    app.command("label")(label_command)
