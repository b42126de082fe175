# Sourced by the scripts here: create .venv if needed, activate it, install lookalike
# (editable) with the extras given as "$1" (e.g. "[dev,server]" or "").
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e ".${1:-}"
