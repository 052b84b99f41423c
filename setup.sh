#!/usr/bin/env bash
# One entry point for a fresh machine: create .venv, install autoresearch, then run the demo or the tests.
#   ./setup.sh demo   set up, then init + prepare + a short research loop on the embedded corpus (offline, CPU ok)
#   ./setup.sh test   set up, then run the test suite
#   ./setup.sh        set up only
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
# torch first, pinned, so the package's loose `torch>=2.9` is already satisfied: on CPU machines this is the
# CPU build; a GPU user who installed their own torch into the venv keeps it.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  pip install torch==2.13.0
fi
pip install -e ".[test]"

case "${1:-}" in
  demo)
    # WS, PROFILE, TOKENS (training tokens per experiment; 0 = train for BUDGET seconds instead), BUDGET and
    # EXPERIMENTS can be overridden. A token budget by default: a laptop is a shared machine, and under a time budget
    # its other jobs would decide how many steps each experiment gets (see the README, "Budgets").
    WS=${WS:-demo-workspace}
    AR="$PWD/$VENV/bin/autoresearch"
    if [ ! -f "$WS/autoresearch.toml" ]; then
      "$AR" init "$WS" --profile "${PROFILE:-cpu}" --time-budget "${BUDGET:-45}" --token-budget "${TOKENS:-163840}"
    fi
    cd "$WS"
    "$AR" prepare
    if git show-ref --quiet "refs/heads/autoresearch/demo"; then
      "$AR" run --resume --tag demo --max-experiments "${EXPERIMENTS:-4}"
    else
      "$AR" run --tag demo --max-experiments "${EXPERIMENTS:-4}"
    fi
    ;;
  test)
    shift
    # The dashboard test drives a real headless Chromium (Debian's package; Playwright's own download is not used).
    if ! command -v chromium >/dev/null 2>&1 && [ -z "${AUTORESEARCH_CHROMIUM:-}" ]; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
      else
        echo "note: the dashboard test needs Chromium: sudo apt-get install chromium (or set AUTORESEARCH_CHROMIUM)" >&2
      fi
    fi
    "$VENV/bin/python" -m pytest "$@"
    ;;
  "") ;;
  *) echo "usage: ./setup.sh [demo|test]" >&2; exit 2 ;;
esac
