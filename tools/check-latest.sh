#!/usr/bin/env bash
# Run the test suite on the newest releases that pyproject.toml allows (no lock), to see drift before users do.
#
#   bash tools/check-latest.sh            # fresh virtualenv in .venv-latest, lint, the whole suite
#   bash tools/check-latest.sh -x -k e2e  # arguments go to pytest
#
# When the suite passes it writes constraints-latest.txt (the exact versions it passed on) and prints how they
# differ from constraints.txt; review that and copy it over constraints.txt to move the lock. It exits with
# pytest's status. torch comes from $TORCH (default: the lock's version): a bare `pip install torch` pulls the
# CUDA build (several GB); on a CPU machine with internet set e.g.
#   TORCH="torch --index-url https://download.pytorch.org/whl/cpu" bash tools/check-latest.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv-latest}
torch_spec=${TORCH:-$(grep -E '^torch==' constraints.txt)}
python3 -m venv --clear "$venv"
. "$venv/bin/activate"
pip install -q --upgrade pip
# shellcheck disable=SC2086  # $TORCH may carry pip options
pip install -q $torch_spec
# Hold torch where $TORCH put it: an eager upgrade would otherwise pull the newest CUDA build (several GB).
torch_pin=$(mktemp)
python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" >"$torch_pin"
pip install -q --upgrade --upgrade-strategy eager -c "$torch_pin" -e ".[dev]"  # the rest: newest in range
rm -f "$torch_pin"
pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' >constraints-latest.body
{
  sed -n '/^# /p' constraints.txt | sed -n '1,6p'
  cat constraints-latest.body
} >constraints-latest.txt.tmp
rm constraints-latest.body
echo "newest releases in range (versions that differ from constraints.txt):"
diff <(grep -v '^#' constraints.txt) <(grep -v '^#' constraints-latest.txt.tmp) | grep -E '^[<>]' || echo "  none"

status=0
ruff check . && ruff format --check . && pytest -q "$@" || status=$?
if [ "$status" -eq 0 ]; then
  mv constraints-latest.txt.tmp constraints-latest.txt
  echo "passed on the newest releases: constraints-latest.txt holds them (copy it over constraints.txt to adopt)"
else
  rm -f constraints-latest.txt.tmp
  echo "FAILED on the newest releases (exit $status): keep constraints.txt; add an upper bound in pyproject.toml" \
    "for the package that broke, or fix the code" >&2
fi
exit "$status"
