#!/usr/bin/env bash
# One entry point for a fresh machine: create .venv, install autoresearch, then run the demo or the tests.
#   ./setup.sh demo   set up, then init + prepare + a short research loop on the embedded corpus (offline, CPU ok)
#   ./setup.sh test   set up, then run the test suite
#   ./setup.sh example NAME   set up (with scikit-learn), make NAME-workspace/ from examples/NAME with
#                     `autoresearch init --task` and run a short research loop on it with the search agent (offline)
#   ./setup.sh        set up only
# torch: TORCH (default torch==2.13.0) is installed from pip's configured index unless TORCH_INDEX_URL names
# another one, e.g. https://download.pytorch.org/whl/cpu (CPU wheels, ~200 MB) or .../whl/cu128 (CUDA 12.8).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
# torch first, pinned, so the package's loose `torch>=2.9` is already satisfied. Which build comes depends on the
# index: on Linux, PyPI's torch is the CUDA build (several GB, GPU or not), so say which index is used and how to
# pick another. A torch already in the venv (say a CUDA build a GPU user installed) is kept.
TORCH=${TORCH:-torch==2.13.0}
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    echo "setup: installing $TORCH from $TORCH_INDEX_URL (TORCH_INDEX_URL)"
    pip install "$TORCH" --index-url "$TORCH_INDEX_URL"
  else
    echo "setup: installing $TORCH from pip's configured index. On Linux, PyPI's build is the CUDA one (several" \
         "GB); for the CPU wheels: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu ./setup.sh"
    pip install "$TORCH"
  fi
fi
EXTRAS=test
[ "${1:-}" = example ] && EXTRAS=test,examples  # the examples' prepare.py reads scikit-learn's data sets
pip install -e ".[$EXTRAS]"
"$VENV/bin/python" -c "import torch; print('setup: torch', torch.__version__, '| CUDA build:', torch.version.cuda or 'no',
      '| GPU visible:', torch.cuda.is_available())"

# What a newcomer does after the demo: the venv is not active in their shell, so `autoresearch` is not on PATH yet.
next_steps() {
  cat <<NEXT

Next steps (in your shell: the demo ran autoresearch from $VENV without activating it):
  source $VENV/bin/activate          # puts \`autoresearch\` on PATH (or call $VENV/bin/autoresearch)
  cd $WS
  autoresearch status                # the table of experiments and the best so far
  autoresearch report                # progress.png and report.html in .autoresearch/report/
  autoresearch dashboard             # a live page on http://127.0.0.1:8765 (run it beside \`autoresearch run\`)
  autoresearch run --resume --more 10                # 10 more experiments with the built-in search agent
  # a real agent (setup installed the anthropic and openai packages; the run checks the key before training):
  export ANTHROPIC_API_KEY=...
  autoresearch run --agent anthropic:claude-sonnet-4-5 --max-hours 8 --max-cost 20
NEXT
}

case "${1:-}" in
  demo)
    # WS, PROFILE, TOKENS (training tokens per experiment; 0 = train for BUDGET seconds instead), BUDGET and
    # EXPERIMENTS (of the first run; each run again adds that many) can be overridden. A token budget by default: a
    # laptop is a shared machine, and under a time budget its other jobs would decide how many steps each
    # experiment gets (see the README, "Budgets").
    WS=${WS:-demo-workspace}
    AR="$PWD/$VENV/bin/autoresearch"
    if [ ! -f "$WS/autoresearch.toml" ]; then
      "$AR" init "$WS" --profile "${PROFILE:-cpu}" --time-budget "${BUDGET:-45}" --token-budget "${TOKENS:-163840}"
    fi
    cd "$WS"
    "$AR" prepare
    if git show-ref --quiet "refs/heads/autoresearch/demo"; then
      # Run again: EXPERIMENTS more (--max-experiments is of the whole run, which has reached it)
      "$AR" run --resume --tag demo --more "${EXPERIMENTS:-4}"
    else
      "$AR" run --tag demo --max-experiments "${EXPERIMENTS:-4}"
    fi
    next_steps
    ;;
  example)
    # WS and EXPERIMENTS (of the first run; each run again adds that many) can be overridden.
    NAME=${2:-}
    if [ -z "$NAME" ] || [ ! -f "examples/$NAME/task.toml" ]; then
      echo "usage: ./setup.sh example NAME, NAME one of: $(ls examples | tr '\n' ' ')" >&2; exit 2
    fi
    WS=${WS:-$NAME-workspace}
    AR="$PWD/$VENV/bin/autoresearch"
    if [ ! -d "$WS/.git" ]; then
      "$AR" init "$WS" --task "examples/$NAME"
    fi
    cd "$WS"
    if git show-ref --quiet "refs/heads/autoresearch/$NAME"; then
      "$AR" run --resume --tag "$NAME" --more "${EXPERIMENTS:-6}"
    else
      "$AR" run --agent search --tag "$NAME" --max-experiments "${EXPERIMENTS:-6}"
    fi
    next_steps
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
    # Three processes, a test module each at a time (module fixtures and a module's order stay as they are), even on
    # 2 cores: much of a test's time is its subprocesses starting (python, torch) and waiting, which a third process
    # fills (bench/RESULTS.md). The tests are written for a shared, busy machine, so they run beside each other as
    # they would beside other jobs.
    # A worker that dies (killed, out of memory) fails the run at once, naming the test: replacing it under
    # --dist loadfile can hang until CI's limit (pytest-xdist issue #784).
    # Modules go out longest first (tests/conftest.py orders them; xdist's own reorder, by test count, would send
    # the one-test GPU check last, to end alone).
    "$VENV/bin/python" -m pytest -n "${TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder \
      --max-worker-restart=0 "$@"
    ;;
  "") ;;
  *) echo "usage: ./setup.sh [demo|test|example NAME]" >&2; exit 2 ;;
esac
