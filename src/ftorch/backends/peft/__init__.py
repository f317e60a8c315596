"""provider=peft: transformers + PEFT through TRL, in this process or one process per GPU (child.py under torchrun)."""
