"""breast_cancer: a task written by following only the README's "Your own model and metric" (a newcomer's test).
Writes data/ from scikit-learn's breast cancer data (569 tumours, 30 features): train / val / test, seeded."""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

data = Path(__file__).resolve().parent / "data"
x, y = load_breast_cancer(return_X_y=True)
x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.5, random_state=1, stratify=y)
x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=1, stratify=y_rest)
data.mkdir(exist_ok=True)
for name, a in dict(train_x=x_train, train_y=y_train, val_x=x_val, val_y=y_val, test_x=x_test, test_y=y_test).items():
    np.save(data / f"{name}.npy", a, allow_pickle=False)
print("wrote data/")
