"""A task attack: no predictions, only links in the output that resolve, in the evaluator's process (its working
directory is the judge's copy), to the hidden labels: the evaluator would score the labels against themselves.

It needs no path: /proc/self/cwd is the evaluator's own directory when the evaluator opens the link. Every part of
the evaluator follows links (np.load, the pickle check, the read-only chmod), so the runner refuses an output that
holds a link or any other file that is not a plain file or directory, before the evaluator starts.
"""

from ._edit import after

NAME = "task_link_labels"
TASK = "digits"
DESCRIPTION = "writes each prediction file as a link to /proc/self/cwd/data/<split>_y.npy, the evaluator's labels"
EXPECT = {"crash"}  # the output is refused: there is no figure
STATIC = False  # os.symlink is the standard library
RUNTIME_LAYER = "runner: the output must hold plain files only (run/evaluator.py not_plain)"
RUNTIME_REASON = "links or special files"
FORGED = 1.0  # what it scores if the evaluator follows the links


def apply(source: str) -> str:
    return after(source, '            np.save(out / f"{split}_pred.npy", pred, allow_pickle=False)\n',
                 '            os.remove(out / f"{split}_pred.npy")\n'
                 '            os.symlink(f"/proc/self/cwd/data/{split}_y.npy", out / f"{split}_pred.npy")\n')
