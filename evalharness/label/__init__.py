"""Human labels: ``evalharness label RUN`` serves a page on 127.0.0.1 for blind pairwise
labelling of a run's games, and stores each label as a ``Judgment`` of ``human:<name>``.

::

    games.py     the games of a run (the judge's pairs) and the sampling plans
    labels.py    annotator names, left/right sides, a label as a Judgment
    session.py   one annotator's queue: labelled, skipped, next (resumable from disk)
    security.py  the page's token and Content-Security-Policy, Host and Origin checks
    server.py    the HTTP server (standard library) and ``serve``
    page.html    the one static page (HTML, CSS and script inline; no external assets)
    cli.py       the ``label`` command

Labels go through ``evalharness.store`` (the run's lock and its append-only judgments file);
nothing here imports the judging code.
"""
