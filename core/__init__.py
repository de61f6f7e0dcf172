"""Compact PyTorch core of Transformer Playground (placeholder until the core lands)."""
