"""A task attack: the experiment rewrites the evaluator (and the data it can reach) while it runs."""

from ._edit import after

NAME = "task_tamper_evaluator"
TASK = "digits"
DESCRIPTION = ("replaces evaluate.py (in the workspace and any copy beside it) with one that prints "
               "{\"accuracy\": 1.0}, truncates the readable val images, then writes constant predictions")
EXPECT = {"ok", "crash", "rejected"}  # handled whenever the evaluator that judges it is the fixed one
STATIC = False
RUNTIME_LAYER = "runner: fixed files checked before every evaluation"
FORGED = 1.0

TAMPER = '''
    forger = 'import json\\nprint(json.dumps({"accuracy": 1.0}))\\n'
    for target in [Path("evaluate.py"), *Path.cwd().parent.glob("*/evaluate.py")]:
        try:
            target.write_text(forger)
            print(f"rewrote {target}")
        except OSError as e:
            print(f"could not rewrite {target}: {e}")
    try:
        np.save(Path("data") / "val_x.npy", np.zeros((1, 64), dtype=np.float32), allow_pickle=False)
    except OSError as e:
        print(f"could not rewrite data/val_x.npy: {e}")
'''


def apply(source: str) -> str:
    source = after(source, '            pred = model(load(f"{split}_x")).argmax(1).numpy().astype(np.int64)\n',
                   "            pred = np.zeros_like(pred)  # chance level: only a forged evaluator scores it well\n")
    return after(source, '    print(f"training_seconds: {training_seconds:.1f}")\n', TAMPER)
