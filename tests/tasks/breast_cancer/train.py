"""Logistic regression in plain numpy, minibatch gradient descent. Writes the predicted probability of each val
and test tumour being benign as CSV files to $AUTORESEARCH_OUTPUT."""

import os
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------

LR = 0.01                   # gradient-descent step size
EPOCHS = 3                  # passes over the training rows
BATCH_SIZE = 32             # rows per step
L2 = 0.01                   # weight decay
SEED = 0                    # used when AUTORESEARCH_SEED is not set

rng = np.random.default_rng(int(os.environ.get("AUTORESEARCH_SEED", SEED)))
x = np.load("data/train_x.npy", allow_pickle=False)
y = np.load("data/train_y.npy", allow_pickle=False)
mean, std = x.mean(0), x.std(0) + 1e-9
x = (x - mean) / std
w, b = np.zeros(x.shape[1]), 0.0
for _ in range(EPOCHS):
    order = rng.permutation(len(x))
    for i in range(0, len(x), BATCH_SIZE):
        idx = order[i : i + BATCH_SIZE]
        p = 1 / (1 + np.exp(-(x[idx] @ w + b)))
        w -= LR * (x[idx].T @ (p - y[idx]) / len(idx) + L2 * w)
        b -= LR * float(np.mean(p - y[idx]))

out = Path(os.environ.get("AUTORESEARCH_OUTPUT", "output"))
out.mkdir(parents=True, exist_ok=True)
for split in ("val", "test"):
    xs = (np.load(f"data/{split}_x.npy", allow_pickle=False) - mean) / std
    np.savetxt(out / f"{split}_pred.csv", 1 / (1 + np.exp(-(xs @ w + b))), fmt="%.6f")
print("wrote", out)
