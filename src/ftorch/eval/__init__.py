"""Evaluation: held-out task metrics, general capability, safety, and the prompt-only baseline."""
