"""Which environment variables are credentials: an experiment's processes never see them (run/supervisor.py), nor
do command agents see the trackers' (agents/command.py), though they keep the model APIs' keys they work with."""

from __future__ import annotations

import re

# Names of environment variables an experiment never sees: API keys and other credentials of the orchestrator.
SECRET_RE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION)", re.IGNORECASE)
# The trackers' (`run --track`): MLFLOW_TRACKING_USERNAME names no secret, MLFLOW_TRACKING_URI may carry one
# (https://user:password@host), and a W&B or Databricks variable may point at a server that takes the key.
TRACKER_PREFIXES = ("MLFLOW_", "WANDB_", "DATABRICKS_")
SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCP_", "OPENAI", "ANTHROPIC", "HF_TOKEN", "HUGGING", *TRACKER_PREFIXES)
