"""The fixed evaluator of the diabetes task: root mean squared error of the predicted progression on one split.

    python evaluate.py val     (the figure the loop keeps or discards on; lower is better)
    python evaluate.py test    (the holdout: never shown to an agent)

It reads `<split>_pred.npy` from the experiment's output directory ($AUTORESEARCH_OUTPUT; `output/` when run by
hand) and the hidden targets from data/, and prints one JSON object on its last line (rmse, with r2 and mae as
extra figures). The one rule of an evaluator: it never imports or unpickles what the experiment wrote, so
predictions are loaded with allow_pickle=False and checked for type, shape and finiteness first. Any problem exits
non-zero with the reason on stderr.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def fail(message: str) -> None:
    print(f"evaluate: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    split = sys.argv[1] if len(sys.argv) > 1 else "val"
    if split not in ("val", "test"):
        fail(f"unknown split {split!r}: use `python evaluate.py val` or `python evaluate.py test`")
    target = np.load(DATA / f"{split}_y.npy", allow_pickle=False).astype(np.float64)
    path = Path(os.environ.get("AUTORESEARCH_OUTPUT", "output")) / f"{split}_pred.npy"
    if not path.is_file():
        fail(f"{path} is missing: train.py must save its {split} predictions there (np.save, a float array)")
    try:
        pred = np.load(path, allow_pickle=False)
    except ValueError as e:  # an object array (a pickle) or a file that is not .npy
        fail(f"{path} is not a plain .npy array ({e})")
    if not isinstance(pred, np.ndarray) or pred.shape != target.shape or not np.issubdtype(pred.dtype, np.number):
        fail(f"{path} must hold {target.shape[0]} numbers, shape {target.shape}; it holds "
             f"{getattr(pred, 'dtype', type(pred).__name__)} {getattr(pred, 'shape', '')}")
    pred = pred.astype(np.float64)
    if not np.isfinite(pred).all():
        fail(f"{path} holds {int((~np.isfinite(pred)).sum())} NaN or infinite predictions")
    err = pred - target
    rmse = float(np.sqrt(np.mean(err**2)))
    r2 = float(1 - np.sum(err**2) / np.sum((target - target.mean()) ** 2))
    print(json.dumps({"rmse": rmse, "r2": r2, "mae": float(np.mean(np.abs(err))), "n": int(target.size)}))


if __name__ == "__main__":
    main()
