#!/usr/bin/env bash
# Creates (once) the Python venv with the reference implementations driftwatch is checked
# against: River, SciPy, NumPy, scikit-learn and fairlearn at the exact versions the committed
# vectors came from. Used by tests/vectors/*.py (regenerating vectors) and benches/quality
# (River side by side).
# Prints the venv's python path on stdout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DRIFTWATCH_PYENV:-$root/target/pyenv}"
marker="$venv/.driftwatch-complete"
requirements="river==0.26.1 scipy==1.17.1 numpy==2.4.6 scikit-learn==1.9.1 fairlearn==0.15.0"
if [[ ! -f "$marker" || "$(cat "$marker")" != "$requirements" ]]; then
  echo "pyenv: creating $venv ($requirements)" >&2
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements >&2
  echo "$requirements" > "$marker"
fi
echo "$venv/bin/python"
