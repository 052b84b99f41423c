"""
A small torch MLP regresses disease progression on scikit-learn's diabetes data (442 patients, 10 measurements).
This is the file the research agent edits.

Trains on data/train_*.npy, then writes its predictions for the val and test patients as .npy files to the output
directory ($AUTORESEARCH_OUTPUT; `output/` when run by hand). The fixed evaluator (evaluate.py) scores them (RMSE,
lower is better) against targets this script cannot read. A fixed amount of work: EPOCHS passes over the data.

Run by hand:  python prepare.py && python train.py && python evaluate.py val
"""

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autoresearch.harness import budget

# ---------------------------------------------------------------------------
# Hyperparameters (edit these directly, no CLI flags; one literal per line)
# ---------------------------------------------------------------------------

HIDDEN = 32                 # width of each hidden layer
DEPTH = 2                   # hidden layers
DROPOUT = 0.1               # dropout after each hidden layer
EPOCHS = 6                  # passes over the training patients
BATCH_SIZE = 32             # patients per optimizer step
LR = 0.0005                 # AdamW learning rate (peak of the schedule)
WEIGHT_DECAY = 0.0          # AdamW decoupled weight decay
WARMDOWN_RATIO = 0.3        # fraction of the steps at the end spent ramping the lr down to 0
HUBER_DELTA = 1.0           # Huber loss on the standardised target (large = squared error, small = absolute)
SEED = 0                    # torch RNG seed when autoresearch does not pass one (AUTORESEARCH_SEED)

# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, features: int, hidden: int, depth: int, dropout: float):
        super().__init__()
        layers, width = [], features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, x):  # x: (B, features), standardised
        return self.head(self.body(x)).squeeze(-1)  # (B,) standardised target


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def load(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(Path("data") / f"{name}.npy", allow_pickle=False))


def main() -> None:
    t0 = time.time()
    seed = int(os.environ.get("AUTORESEARCH_SEED", SEED))
    torch.manual_seed(seed)
    x_train, y_train = load("train_x"), load("train_y")
    x_mean, x_std = x_train.mean(0), x_train.std(0) + 1e-6  # statistics of the training rows only
    y_mean, y_std = y_train.mean(), y_train.std()
    xs, ys = (x_train - x_mean) / x_std, (y_train - y_mean) / y_std
    model = MLP(xs.shape[1], HIDDEN, DEPTH, DROPOUT)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    total_steps = EPOCHS * -(-len(xs) // BATCH_SIZE)
    warmdown = max(1, int(WARMDOWN_RATIO * total_steps))

    budget.start()  # training starts here (a no-op budget: this task is fixed work under a timeout)
    step, loss = 0, torch.tensor(float("nan"))
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(xs))
        for i in range(0, len(xs), BATCH_SIZE):
            idx = order[i : i + BATCH_SIZE]
            frac = min(1.0, (total_steps - step) / warmdown)  # 1 until the warmdown, then down to 0
            for group in opt.param_groups:
                group["lr"] = LR * frac
            loss = F.huber_loss(model(xs[idx]), ys[idx], delta=HUBER_DELTA)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if budget.over():
            break
    training_seconds = time.time() - t0

    model.eval()
    out = Path(os.environ.get("AUTORESEARCH_OUTPUT", "output"))
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        train_rmse = ((model(xs) * y_std + y_mean - y_train) ** 2).mean().sqrt().item()
        for split in ("val", "test"):
            pred = model((load(f"{split}_x") - x_mean) / x_std) * y_std + y_mean
            np.save(out / f"{split}_pred.npy", pred.numpy().astype(np.float64), allow_pickle=False)

    print("---")
    print(f"train_loss:       {loss.item():.4f}")
    print(f"train_rmse:       {train_rmse:.2f}")
    print(f"num_steps:        {step}")
    print(f"training_seconds: {training_seconds:.1f}")


if __name__ == "__main__":
    main()
