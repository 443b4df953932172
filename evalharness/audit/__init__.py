"""Integrity audit of a league: gamed, degenerate and leaked answers, and an unreliable judge.

Each detector is a pure function in its own module (answers or judgments in, ``Finding``
records out); ``evalharness.audit.run`` runs them all over a run directory and keeps the
findings in it. Thresholds live in data files (``evalharness/audit/data/*.toml``), not in code.
"""
