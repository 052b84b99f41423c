"""The fixed evaluator of the digits task: accuracy of the predicted labels on one split.

    python evaluate.py val     (the figure the loop keeps or discards on)
    python evaluate.py test    (the holdout: never shown to an agent)

It reads `<split>_pred.npy` from the experiment's output directory ($AUTORESEARCH_OUTPUT; `output/` when run by
hand) and the hidden labels from data/, and prints one JSON object on its last line. The one rule of an evaluator:
it never imports or unpickles what the experiment wrote, so predictions are loaded with allow_pickle=False and
checked for type and shape before anything is computed. Any problem exits non-zero with the reason on stderr.
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
    labels = np.load(DATA / f"{split}_y.npy", allow_pickle=False)
    path = Path(os.environ.get("AUTORESEARCH_OUTPUT", "output")) / f"{split}_pred.npy"
    if not path.is_file():
        fail(f"{path} is missing: train.py must save its {split} predictions there (np.save, an integer array)")
    try:
        pred = np.load(path, allow_pickle=False)
    except ValueError as e:  # an object array (a pickle) or a file that is not .npy
        fail(f"{path} is not a plain .npy array ({e})")
    if not isinstance(pred, np.ndarray) or pred.shape != labels.shape or not np.issubdtype(pred.dtype, np.integer):
        fail(f"{path} must hold {labels.shape[0]} integer labels, shape {labels.shape}; it holds "
             f"{getattr(pred, 'dtype', type(pred).__name__)} {getattr(pred, 'shape', '')}")
    correct = int((pred == labels).sum())
    print(json.dumps({"accuracy": correct / labels.size, "correct": correct, "n": int(labels.size)}))


if __name__ == "__main__":
    main()
