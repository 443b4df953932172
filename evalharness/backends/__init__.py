"""Model backends behind one protocol: transformers+peft, vLLM, OpenAI-compatible, fake."""
