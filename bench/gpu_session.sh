#!/usr/bin/env bash
# Every device check of one lent-GPU session, most important first, each under its own time limit
# (see ../shared/GPU.md: the whole session has about 15 device-minutes, a call at most 10).
#
#   1. QLoRA on CUDA          pytest -m gpu tests/test_qlora.py tests/serve (CUDA cases)       issue 11, issue 8
#   2. training speed         bench/train_speed.py --device cuda --arch gpt2 --epochs 5         issue 9
#   3. model quality          bench/gpu_quality.sh (SmolLM2-135M, 3 seeds per split and mode)  issue 10
#   4. serving speed          bench/serve_speed.py --device cuda                               issue 8
#
# Usage, from the project root on the GPU machine (python3 there has torch with CUDA):
#   bench/gpu_session.sh OUT_DIR WHEELS_DIR DATA_FILE GGUF_PIECES GGUF_SHA256 [QUALITY_BUDGET_S]
#     WHEELS_DIR    the wheels the image lacks (../shared/tools/gpu-wheels.sh gguf, minus what the image has)
#     GGUF_PIECES   the SmolLM2 GGUF, or its pieces joined by commas (the file is over one call's carry limit)
# Writes at most 8 files to OUT_DIR (what a device call brings back): session.log and the benchmarks' JSON.
set -uo pipefail

OUT="$1"; WHEELS="$2"; DATA="$3"; GGUF="$4"; SHA="$5"; QUALITY_BUDGET="${6:-300}"
mkdir -p "$OUT"
exec > >(tee "$OUT/session.log") 2>&1
START=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - START )) s] $*"; }

stamp "install wheels"
for w in "$WHEELS"/*.whl; do
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .site "$w" || echo "PIP FAILED: $w"
done
export PYTHONPATH="$PWD:$PWD/.site" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, peft, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"

stamp "1. QLoRA and serving on CUDA (pytest -m gpu)"
timeout 150 python3 -m pytest -m gpu -q -rs -p no:cacheprovider tests/test_qlora.py tests/serve -s 2>&1 | tail -n 25

stamp "2. training speed"
timeout 200 python3 bench/train_speed.py --device cuda --arch gpt2 --epochs 5 --data "$DATA" \
  --out "$OUT/train-speed-cuda.json" 2>&1 | grep -v "it/s\]" | tail -n 40

stamp "3. quality (budget ${QUALITY_BUDGET} s)"
bench/gpu_quality.sh --data "$DATA" --sha256 "$SHA" --budget "$QUALITY_BUDGET" "$GGUF" "$OUT" 2>&1 | tail -n 60

stamp "4. serving speed"
timeout 90 python3 bench/serve_speed.py --device cuda --data "$DATA" --out "$OUT/serve-speed-cuda.json" 2>&1 | tail -n 30

stamp "done"
ls -la "$OUT"
