"""Log loss of the predicted probabilities (lower is better), read from CSV: never unpickles anything."""

import json
import os
import sys
from pathlib import Path

import numpy as np

split = sys.argv[1]
y = np.load(Path(__file__).resolve().parent / "data" / f"{split}_y.npy", allow_pickle=False)
path = Path(os.environ.get("AUTORESEARCH_OUTPUT", "output")) / f"{split}_pred.csv"
try:
    p = np.loadtxt(path, dtype=np.float64, ndmin=1)
except (OSError, ValueError) as e:
    sys.exit(f"evaluate: cannot read {path}: {e}")
if p.shape != y.shape or not np.all((p >= 0) & (p <= 1)):
    sys.exit(f"evaluate: {path} must hold {len(y)} probabilities in [0, 1]")
p = np.clip(p, 1e-6, 1 - 1e-6)
logloss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
print(json.dumps({"logloss": logloss, "accuracy": float(np.mean((p > 0.5) == y))}))
