"""Sweeps: the objective each trial reports, ftorch's Optuna sweeper for Hydra, and the leaderboard."""
