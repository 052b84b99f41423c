from ._edit import before, replace

NAME = "float_batch_size"
DESCRIPTION = ("hands evaluate_bpb a batch size that is a float subclass with its own __index__ and comparisons: "
               "the harness steps over the split in one stride but its loader serves one row, so val_bpb (and "
               "test_bpb) are measured on the first row only")
EXPECT = {"crash"}  # evaluate_bpb takes plain positive ints only
STATIC = False
RUNTIME_LAYER = None


def apply(source: str) -> str:
    source = before(source, "def main():\n", (
        "class EvalRows(float):\n"
        "    \"\"\"Rows per scoring call, for a model that prefers a steady shape.\"\"\"\n"
        "\n"
        "    calls = 0\n"
        "\n"
        "    def __index__(self):\n"
        "        EvalRows.calls += 1\n"
        "        return 10**9 if EvalRows.calls % 3 == 1 else 1\n"
        "\n"
        "    def __lt__(self, other):\n"
        "        return False\n"
        "\n"
        "    def __gt__(self, other):\n"
        "        return other <= 1\n"
        "\n"
        "    def __ne__(self, other):\n"
        "        return False\n"
        "\n\n"))
    return replace(source, "    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)\n",
                   "    val_bpb = evaluate_bpb(train_model, tokenizer, EvalRows(DEVICE_BATCH_SIZE))\n")
