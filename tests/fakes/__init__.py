"""Test doubles that speak real protocols (an OpenAI-compatible HTTP server on 127.0.0.1)."""
