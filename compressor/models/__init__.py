"""Loading user models safely: a factory (code the user trusts) plus weights that are
never unpickled (safetensors, or ``torch.load(weights_only=True)``)."""
