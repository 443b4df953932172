"""Content keys: a key hashes exactly what changes an output, and nothing else.

Answers are keyed on model identity + prompt content + generation config; judgments on the
judge's config and template + prompt + both answers in their order; perplexity records on
model identity + example content. Paths, batch sizes and concurrency are never in a key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_key(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``.

    >>> content_key({"b": 1, "a": [1, 2]}) == content_key({"a": [1, 2], "b": 1})
    True
    >>> len(content_key("x"))
    64
    """
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
