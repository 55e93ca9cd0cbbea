"""Structured channel pruning (Torch-Pruning) and weight sparsity."""
