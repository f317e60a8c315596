"""`ftorch export RUN_DIR --to merged|gguf|ollama`: what a run trained, in the form other tools load, each export
in a new folder under RUN_DIR/export/, verified against base + adapter, and recorded in run.json.

The pieces: source.py finds the run's base model and adapter; merged.py merges them; gguf.py writes a GGUF;
ollama.py adds a Modelfile; verify.py compares the export's greedy answers with the adapter's."""

from __future__ import annotations

KINDS = ("merged", "gguf", "ollama")
MERGED_DTYPES = ("float32", "bfloat16", "float16")
GGUF_TYPES = ("f16", "q8_0", "q4_0", "q4_1")
