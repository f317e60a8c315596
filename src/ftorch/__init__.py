"""ftorch: one recipe in, a complete, reproducible, evaluated fine-tuning run out."""

__version__ = "0.1.0"
