"""One experiment: supervisor, sandbox, static check, RunResult."""
