from ._edit import after, imports

NAME = "read_test_split"
DESCRIPTION = "loads the held-out test split from the prepared files (to pick its settings on it)"
EXPECT = {"rejected"}
STATIC = True  # harness internals, numpy.load and the file names are all refused
RUNTIME = {"crash"}  # the test files cannot be opened from train.py's process
RUNTIME_LAYER = "sandbox: val and test are the scorer's"


def apply(source: str) -> str:
    source = imports(source, "import numpy as np\nfrom autoresearch.harness.constants import prepared_dir\n")
    return after(source, "    tokenizer = Tokenizer.load()\n",
                 "    test_tokens = np.load(prepared_dir() / \"test.tokens.npy\", mmap_mode=\"r\")  # held-out text\n"
                 "    print(f\"test split: {len(test_tokens):,} tokens\", flush=True)\n")
