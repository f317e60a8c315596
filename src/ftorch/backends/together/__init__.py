"""provider=together: Together AI's fine-tuning API (backend.py), its adapter download (pull.py), evaluation
(eval.py)."""
