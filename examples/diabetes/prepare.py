"""Writes data/ for the diabetes task from scikit-learn's diabetes data (442 patients, 10 baseline measurements,
and a measure of disease progression one year later; shipped inside the package: no download). Fixed:
`autoresearch init --task` runs it once (task.toml's `prepare`).

The split is seeded, so every machine gets the same rows: 60% train, 20% val, 20% test. The experiment may read
the features of all three and the train targets; the val and test targets are hidden (only evaluate.py reads them).
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

SPLIT_SEED = 0
DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    x, y = load_diabetes(return_X_y=True, scaled=False)  # raw units: age in years, bmi, blood pressure...
    x, y = x.astype(np.float32), y.astype(np.float32)  # (442, 10), (442,)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, random_state=SPLIT_SEED)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=SPLIT_SEED)
    DATA.mkdir(exist_ok=True)
    for name, array in [("train_x", x_train), ("train_y", y_train), ("val_x", x_val), ("val_y", y_val),
                        ("test_x", x_test), ("test_y", y_test)]:
        np.save(DATA / f"{name}.npy", array, allow_pickle=False)
    print(f"prepare: data/ written: train {len(y_train)}, val {len(y_val)}, test {len(y_test)} patients")


if __name__ == "__main__":
    main()
