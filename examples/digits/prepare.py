"""Writes data/ for the digits task from scikit-learn's digits (1,797 8x8 grey images of handwritten digits,
shipped inside the package: no download). Fixed: `autoresearch init --task` runs it once (task.toml's `prepare`).

The split is stratified and seeded, so every machine gets the same rows: 60% train, 20% val, 20% test. The
experiment may read the images of all three and the train labels; the val and test labels are hidden (only
evaluate.py reads them).
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SPLIT_SEED = 0
DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)  # (1797, 64) pixel intensities in [0, 1]
    y = y.astype(np.int64)  # (1797,) labels 0..9
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, random_state=SPLIT_SEED, stratify=y)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=SPLIT_SEED,
                                                    stratify=y_rest)
    DATA.mkdir(exist_ok=True)
    for name, array in [("train_x", x_train), ("train_y", y_train), ("val_x", x_val), ("val_y", y_val),
                        ("test_x", x_test), ("test_y", y_test)]:
        np.save(DATA / f"{name}.npy", array, allow_pickle=False)
    print(f"prepare: data/ written: train {len(y_train)}, val {len(y_val)}, test {len(y_test)} images")


if __name__ == "__main__":
    main()
