#!/usr/bin/env bash
# SmolLM2-135M quality on one GPU: bench/quality.py for book/full, book/lora, honest/full, honest/lora, 3 seeds
# each, most important first, inside one overall time budget. A 135M model at batch 16 leaves an H200 idle for much
# of each step (a few thousand small kernels launched from Python, plus process start, model load and evaluation),
# so the seeds of a step train at once (--jobs 3), and the two short book steps run together in one wave (6
# processes). The honest steps (3.5x the training rows) get a wave each, so that a time limit cuts the last one only.
#
# Usage (from the project root):
#   bench/gpu_quality.sh [options] GGUF OUT_DIR [-- extra bench/quality.py arguments]
#     GGUF      the SmolLM2-135M-Instruct Q4_1 .gguf file, or its pieces joined by commas (concatenated in that
#               order: for a machine that receives files in limited sizes; see bench/gpu_quality_stage.sh)
#     OUT_DIR   gets quality-<split>-<mode>.json per finished step and quality-logs.tar.gz (run logs + metrics)
#   options:
#     --data FILE         the UCI SMSSpamCollection file you downloaded (pass it: the default is a development path)
#     --waves LIST        steps in priority order: waves separated by ',', steps of one wave joined by '+'
#                         (default book-full+book-lora,honest-full,honest-lora). recipe-full / recipe-lora: the
#                         book split through the GPT-2 recipes configs/full.yaml / configs/lora.yaml (LoRA on every
#                         linear layer: GPT-2's module names do not exist in SmolLM2), the real-weights check of
#                         their settings -> quality-book-<mode>-configs-<mode>.json
#     --seeds "0 1 2"     seeds per step (default 0 1 2)
#     --jobs N            seeds of one step trained at once (default 3)
#     --budget SECONDS    all waves together (default 540); a wave gets what is left, up to its cap
#     --step-cap SECONDS  one cap for every step (default 330 for book steps, 300 for honest steps): a guard
#                         against a hung run, not a plan; a wave's cap is the largest of its steps' caps
#     --min-wave SECONDS  a wave that cannot get this long is skipped, and says so (default 60)
#     --sha256 HEX        expected sha256 of the assembled GGUF (checked before anything runs)
# Each step prints its table when its wave ends; the last lines are a one-line summary per finished step.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$ROOT/../shared/data/SMSSpamCollection"
WAVES="book-full+book-lora,honest-full,honest-lora"
SEEDS="0 1 2"
JOBS=3
BUDGET=540
# Generous on purpose: a wave stopped at its cap loses all its seeds (they train at once), so a slow but
# progressing wave should rather take time from the waves after it, which matter less.
declare -A CAP=([book-full]=330 [book-lora]=330 [honest-full]=300 [honest-lora]=300 [recipe-full]=330 [recipe-lora]=330)
MIN_WAVE=60
SHA=""

die() { echo "error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --waves) WAVES="$2"; shift 2 ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --step-cap) for k in "${!CAP[@]}"; do CAP[$k]="$2"; done; shift 2 ;;
    --min-wave) MIN_WAVE="$2"; shift 2 ;;
    --sha256) SHA="$2"; shift 2 ;;
    --) break ;;
    -*) die "unknown option $1 (see the header of $0)" ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || die "usage: $0 [options] GGUF OUT_DIR [-- quality.py args]"
GGUF_ARG="$1"; OUT="$2"; shift 2
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
PY="${PYTHON:-python3}"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
[ -f "$DATA" ] || die "data file $DATA not found; pass --data FILE (the UCI SMSSpamCollection)"
for wave in ${WAVES//,/ }; do
  for step in ${wave//+/ }; do
    [ -n "${CAP[$step]:-}" ] || die "unknown step $step in --waves (one of: ${!CAP[*]})"
  done
done

# The model: one file, or its pieces concatenated into one (outside the repo).
WORK="${TMPDIR:-/tmp}/spam-tune-quality"
mkdir -p "$WORK/model"
if [[ "$GGUF_ARG" == *,* ]]; then
  IFS=',' read -r -a PIECES <<< "$GGUF_ARG"
  for piece in "${PIECES[@]}"; do
    [ -f "$piece" ] || die "GGUF piece $piece not found (a piece carried by an earlier call is gone once its machine was given back)"
  done
  GGUF="$WORK/model/SmolLM2-135M-Instruct.Q4_1.gguf"
  { cat "${PIECES[@]}" > "$GGUF.tmp" && mv "$GGUF.tmp" "$GGUF"; } || die "cannot assemble $GGUF"
else
  GGUF="$GGUF_ARG"
  [ -f "$GGUF" ] || die "GGUF file $GGUF not found"
fi
if [ -n "$SHA" ]; then
  echo "$SHA  $GGUF" | sha256sum -c --quiet - || die "$GGUF does not match --sha256 (a piece missing or out of order?)"
fi
MODEL_DIR="$(cd "$(dirname "$GGUF")" && pwd)"; GGUF_NAME="$(basename "$GGUF")"

# Fail fast, in one line, on what the image lacks (datasets, evaluate, gguf travel as wheels).
"$PY" - <<'PY' || die "a package is missing (above); carry its wheel"
import importlib.util, platform
needed = ("torch", "transformers", "peft", "accelerate", "datasets", "evaluate", "sklearn", "gguf", "yaml", "pandas")
missing = [m for m in needed if importlib.util.find_spec(m) is None]
if missing:
    raise SystemExit(f"missing: {', '.join(missing)}")
import accelerate, datasets, peft, torch, transformers
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"python {platform.python_version()} torch {torch.__version__} transformers {transformers.__version__} "
      f"peft {peft.__version__} accelerate {accelerate.__version__} datasets {datasets.__version__}; {gpu}")
PY

# De-quantize once before any wave, so concurrent steps never race for the converted checkpoint.
CACHE="$WORK/cache"
"$PY" - "$ROOT" "$MODEL_DIR" "$GGUF_NAME" "$CACHE" 2> "$WORK/convert.err" <<'PY' || { tail -5 "$WORK/convert.err"; die "cannot de-quantize the GGUF (above)"; }
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from transformers.utils import logging
logging.disable_progress_bar()
from pipeline.model.load import convert_gguf
started = time.perf_counter()
out = convert_gguf(sys.argv[2], sys.argv[3], Path(sys.argv[4]) / "converted")
print(f"de-quantized into {out} in {time.perf_counter() - started:.1f} s")
PY

# Threads per training process: the processes of a wave share the machine's cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
RUNS="$WORK/runs"
for wave in ${WAVES//,/ }; do
  cap=0
  for step in ${wave//+/ }; do cap=$(( CAP[$step] > cap ? CAP[$step] : cap )); done
  left=$(( BUDGET - $(elapsed) ))
  limit=$(( left < cap ? left : cap ))
  if [ "$limit" -lt "$MIN_WAVE" ]; then
    echo "== wave $wave: SKIPPED, ${left}s of the ${BUDGET}s budget left"
    continue
  fi
  echo "== wave $wave: ${limit}s at most, starting at $(elapsed)s"
  pids=()
  for step in ${wave//+/ }; do
    split="${step%-*}"; mode="${step#*-}"; recipe=(); out="$OUT"
    if [ "$split" = recipe ]; then
      split=book; out="$WORK/$step"; recipe=(--config "$ROOT/configs/$mode.yaml")
      [ "$mode" = lora ] && recipe+=(--set adapter.target_modules=all-linear)
    fi
    # quality.py stops its runs at --timeout and still writes what finished; `timeout` is only the backstop.
    # shellcheck disable=SC2086
    timeout -k 10 $(( limit + 30 )) "$PY" "$ROOT/bench/quality.py" --split "$split" --mode "$mode" --seeds $SEEDS \
      --jobs "$JOBS" --model-dir "$MODEL_DIR" --gguf-file "$GGUF_NAME" --data "$DATA" --out-dir "$out" \
      --runs-dir "$RUNS/$step" --cache-dir "$CACHE" --timeout "$limit" "${recipe[@]}" "${EXTRA[@]}" \
      > "$WORK/$step.out" 2>&1 &
    pids+=("$!")
  done
  i=0
  for step in ${wave//+/ }; do
    wait "${pids[$i]}"; rc=$?; i=$(( i + 1 ))
    echo "== $step: exit $rc at $(elapsed)s"
    grep -v -e "^Loading weights" -e "^Writing model" "$WORK/$step.out"
    if [ "${step%-*}" = recipe ]; then
      mv "$WORK/$step/quality-book-${step#*-}.json" "$OUT/quality-book-${step#*-}-configs-${step#*-}.json" 2>/dev/null
    fi
  done
done

# Logs, each run's metrics.json and its validation/test predictions (for error and threshold analysis later),
# small enough to come back (at most 8 files from the GPU machine).
(cd "$WORK" && tar czf "$OUT/quality-logs.tar.gz" ./*.out runs/*/*.log runs/*/*/metrics.json \
  runs/*/*/config.yaml runs/*/*/predictions/validation.csv runs/*/*/predictions/test.csv 2>/dev/null)

echo "== summary after $(elapsed)s"
"$PY" - "$OUT" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("quality-*.json")):
    r = json.loads(path.read_text())
    m, s, b = r["mean"], r["std"], r["baseline_mean"]
    decided = [(x["seed"], x.get("test_threshold") or x["test"]) for x in r["per_seed"]]
    errors = " ".join(f"{seed}:{t['errors']}/{t['n']}" for seed, t in decided)
    epochs = " ".join(f"{x['best']['epoch']}/{x['epochs_run']}" for x in r["per_seed"])
    # Test errors the model shares with the TF-IDF row / makes alone, per seed (missing in older JSON files).
    shared = " ".join(f"{v['both']}/{v['model_only']}" for x in r["per_seed"] if (v := x.get("test_errors_vs_baseline")))
    print(f"{r['split']:6s} {r['mode']:4s} n={len(r['per_seed'])} acc {m['accuracy']*100:.2f}±{s['accuracy']*100:.2f} "
          f"spamF1 {m['spam_f1']:.4f}±{s['spam_f1']:.4f} | TF-IDF acc {b['accuracy']*100:.2f} spamF1 {b['spam_f1']:.4f}"
          f" | errors/seed {errors} | with TF-IDF/alone {shared or '-'} | best/run epochs {epochs}"
          f" | wall {max(x['wall_seconds'] for x in r['per_seed'])}s"
          f" | target {r['target']['metric']}>={r['target']['value']}: {r['target']['met']}"
          + (f" | FAILED seeds {[f['seed'] for f in r['failed']]}" if r["failed"] else ""))
PY
