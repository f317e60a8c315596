"""provider=unsloth: Unsloth's patched models, trained in a child process (child.py, in .venv-unsloth where ftorch
is installed too) that backend.py starts and supervises."""
