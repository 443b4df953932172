"""Peers' file formats, read as our records and written from them.

One module per format, each a pure reader (files -> ``Imported``) or writer (records ->
file): ``alpacaeval`` (model_outputs.json, annotations.json), ``arenahard`` (model_answer/,
model_judgment/), ``mtbench`` (pairwise judgments such as gpt-4_pair.jsonl), ``table`` (a
CSV/Parquet table through pandas). ``importer`` writes what a reader returns into a run
directory; ``cli`` holds the ``import`` and ``export`` commands. The formats and how each
maps onto ``Answer`` and ``Judgment`` are documented in docs/formats.md.
"""
