"""Weight-only quantization of decoder LLMs, one module per runtime family."""
