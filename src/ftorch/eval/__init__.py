"""Evaluation: held-out task metrics, general capability, safety, and the prompt-only baseline.

Start at finished.py (`evaluate_run`: a run directory in, eval/<timestamp>/ out); suite.py runs the sections;
the rest are the pieces: tasks and metrics, arms/selection (the strongest prompt), preference, safety, report."""
