"""How long `autoresearch run` takes to refuse an agent that cannot work: every built-in agent, broken.

For each case (an API agent without its key or its package, a coding-agent CLI missing or not logged in, a
`cmd:` program that does not exist), runs `autoresearch run --agent ...` in a fresh process on a workspace whose
data looks prepared, as a user would, and prints the wall time to the error, its first line, and whether torch was
imported. The goal: each under 5 s, before any training (the baseline alone takes minutes).

    python bench/early_checks.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.paths import prepared_dir
from autoresearch.settings import SETTINGS_FILE, Settings

# Runs the console script's code in-process, then reports whether torch came along.
PROBE = ("import sys\n{pre}\nfrom autoresearch.cli import cli\n"
         "try:\n    cli(['run', '--agent', {spec!r}], prog_name='autoresearch')\nexcept SystemExit as e:\n"
         "    code = e.code\nprint('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(code)\n")
HIDE = "sys.modules[{0!r}] = None  # as if the package were not installed"
LOGGED_OUT = {"claude": "print('{\"loggedIn\": false}')",
              "codex": "import sys; print('Not logged in', file=sys.stderr); sys.exit(1)"}
CASES = [  # label, spec, setup
    ("anthropic: no key", "anthropic:claude-sonnet-4-5", ""),
    ("anthropic: no package", "anthropic:claude-sonnet-4-5", HIDE.format("anthropic")),
    ("openai: no key", "openai:gpt-5", ""),
    ("openai: no package", "openai:gpt-5", HIDE.format("openai")),
    ("claude-code: not installed", "claude-code", ""),
    ("claude-code: not logged in", "claude-code", "claude"),
    ("codex: not installed", "codex", ""),
    ("codex: not logged in", "codex", "codex"),
    ("cmd: no such program", "cmd:./my-agent.sh", ""),
]
SECRETS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "CODEX_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN",
           "AUTORESEARCH_BASE_URL", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "autoresearch", "init", str(tmp / "ws"), "--profile", "cpu"],
                       check=True, capture_output=True)
        meta = prepared_dir(Settings.load(tmp / "ws" / SETTINGS_FILE), tmp / "cache") / "meta.json"
        meta.parent.mkdir(parents=True)
        meta.write_text("{}")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print(f"{'case':<28} {'seconds':>7}  torch  error")
        for label, spec, setup in CASES:
            bin_dir = tmp / "bin" / label.replace(" ", "_").replace(":", "")
            bin_dir.mkdir(parents=True)
            env = {k: v for k, v in os.environ.items() if k not in SECRETS}
            path = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}"  # no claude or codex but the stubs
            env.update(AUTORESEARCH_CACHE=str(tmp / "cache"), PATH=path)
            if setup in LOGGED_OUT:
                stub = bin_dir / setup
                stub.write_text(f"#!{sys.executable}\n{LOGGED_OUT[setup]}\n")
                stub.chmod(0o755)
            code = PROBE.format(pre=setup if setup.startswith("sys.modules") else "", spec=spec)
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], cwd=tmp / "ws", env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - t
            lines = out.stderr.strip().splitlines()
            torch = lines[-1].endswith("True") if lines else None
            error = next((ln for ln in lines if ln.startswith("Error:")), f"exit {out.returncode}")
            print(f"{label:<28} {elapsed:7.2f}  {'yes' if torch else 'no':<5}  {error[7:90]}")


if __name__ == "__main__":
    main()
