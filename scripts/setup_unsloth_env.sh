#!/usr/bin/env bash
# Build the separate environment that provider=unsloth and tests/e2e/test_unsloth.py run in.
#
#   bash scripts/setup_unsloth_env.sh            # creates .venv-unsloth/ beside this repo
#   VENV=/some/where PYTHON=python3.11 UNSLOTH_VERSION=2026.10.9 bash scripts/setup_unsloth_env.sh
#
# Why a venv of its own: `import unsloth` patches transformers, PEFT and TRL process-wide, and it pulls
# PyPI's torchvision, whose compiled operators do not load beside the CPU torch these machines use.
# Order matters:
#   1. torch==2.13.0 first: pip takes the CPU file that lies on these machines (uv/poetry would fetch CUDA);
#   2. ftorch (editable) with its dev extras (pytest), with constraints.txt pinning torch;
#   3. unsloth + unsloth_zoo at one tested version (they release often, and each release moves its pins of
#      transformers/TRL), with the torch pin repeated so they cannot swap torch for a CUDA build;
#   4. remove torchvision: Unsloth imports it only if present, and the PyPI wheel breaks `import unsloth`.
# Measured on the 2-core dev machine, nothing cached: 90-120 s, 3.0 GB (the script prints both at the end).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv-unsloth}"
PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"
UNSLOTH_VERSION="${UNSLOTH_VERSION:-2026.10.9}"
start=$(date +%s)

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip
"${PIP[@]}" install -q -c "$ROOT/constraints.txt" "$TORCH"
"${PIP[@]}" install -q -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
"${PIP[@]}" install -q -c "$ROOT/constraints.txt" "$TORCH" "unsloth==$UNSLOTH_VERSION" "unsloth_zoo==$UNSLOTH_VERSION"
"${PIP[@]}" uninstall -q -y torchvision || true

# Fail here, not in the first test, when the environment is not usable (UNSLOTH_DISABLE_CPU_FALLBACK
# is left unset: without a GPU, Unsloth 2026.10 falls back to the CPU).
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import torch
import unsloth  # noqa: F401  (must import cleanly)
from unsloth import FastLanguageModel  # noqa: F401
print("unsloth", md.version("unsloth"), "unsloth_zoo", md.version("unsloth_zoo"), "torch", torch.__version__,
      "transformers", md.version("transformers"), "trl", md.version("trl"), "peft", md.version("peft"))
PY
echo "unsloth env ready: $VENV ($(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1))"
