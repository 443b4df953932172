"""Model backends: one protocol, several engines (transformers+peft, vLLM, OpenAI-compatible, fake)."""
