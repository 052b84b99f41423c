"""Which environment variables are credentials: an experiment's processes never see them (run/supervisor.py)."""

from __future__ import annotations

import re

# Names of environment variables an experiment never sees: API keys and other credentials of the orchestrator.
SECRET_RE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION)", re.IGNORECASE)
SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCP_", "OPENAI", "ANTHROPIC", "HF_TOKEN", "HUGGING")
