"""Tests of pairwise judging (unit and integration, against a real HTTP server on 127.0.0.1)."""
