"""
A small convolutional network on scikit-learn's digits (8x8 images, 10 classes). This is the file the research
agent edits.

Trains on data/train_*.npy, then writes its predicted labels for the val and test images as .npy files to the
output directory ($AUTORESEARCH_OUTPUT; `output/` when run by hand). The fixed evaluator (evaluate.py) scores them
against labels this script cannot read. Stops early if the task's time budget runs out.

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

CHANNELS = 8                # channels of the first convolution (the second has twice as many)
HIDDEN = 32                 # width of the fully connected layer before the classifier
DROPOUT = 0.1               # dropout before the classifier
EPOCHS = 5                  # passes over the training images
BATCH_SIZE = 64             # images per optimizer step
LR = 0.003                  # AdamW learning rate (peak of the schedule)
WEIGHT_DECAY = 0.0          # AdamW decoupled weight decay
WARMDOWN_RATIO = 0.3        # fraction of the steps at the end spent ramping the lr down to 0
LABEL_SMOOTHING = 0.0       # cross-entropy label smoothing
SEED = 0                    # torch RNG seed when autoresearch does not pass one (AUTORESEARCH_SEED)

# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self, channels: int, hidden: int, dropout: float, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.fc = nn.Linear(2 * channels * 2 * 2, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):  # x: (B, 64)
        x = x.view(-1, 1, 8, 8)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, C, 4, 4)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 2C, 2, 2)
        x = self.drop(F.relu(self.fc(x.flatten(1))))  # (B, hidden)
        return self.out(x)  # (B, classes)


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
    model = Net(CHANNELS, HIDDEN, DROPOUT)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = -(-len(x_train) // BATCH_SIZE)
    total_steps = EPOCHS * steps_per_epoch
    warmdown = max(1, int(WARMDOWN_RATIO * total_steps))

    budget.start()  # training starts here: loading the data above is not charged to the time budget
    step, loss = 0, float("nan")
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(x_train), BATCH_SIZE):
            idx = order[i : i + BATCH_SIZE]
            frac = min(1.0, (total_steps - step) / warmdown)  # 1 until the warmdown, then down to 0
            for group in opt.param_groups:
                group["lr"] = LR * frac
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx], label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if budget.over():
                break
        if budget.over():
            print(f"time budget reached in epoch {epoch + 1}")
            break
    training_seconds = time.time() - t0

    model.eval()
    out = Path(os.environ.get("AUTORESEARCH_OUTPUT", "output"))
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        train_acc = (model(x_train).argmax(1) == y_train).float().mean().item()
        for split in ("val", "test"):
            pred = model(load(f"{split}_x")).argmax(1).numpy().astype(np.int64)
            np.save(out / f"{split}_pred.npy", pred, allow_pickle=False)

    print("---")
    print(f"train_loss:       {loss.item():.4f}")
    print(f"train_accuracy:   {train_acc:.4f}")
    print(f"num_steps:        {step}")
    print(f"num_params:       {sum(p.numel() for p in model.parameters())}")
    print(f"training_seconds: {training_seconds:.1f}")


if __name__ == "__main__":
    main()
