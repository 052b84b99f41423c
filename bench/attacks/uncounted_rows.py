from ._edit import after, before, replace

NAME = "uncounted_rows"
DESCRIPTION = ("passes the loader a batch size that is an int subclass whose B * T is 0: the loader serves "
               "int(B) rows but counts no tokens, so the token budget never ends training and the runner sees none")
EXPECT = {"ok", "rejected"}  # ok: neutralised, the loader counts the rows it serves, whatever B claims
STATIC = False  # a class deriving from int with a __mul__ is plain Python
RUNTIME_LAYER = None
LIMITS = {"token_budget": 2 * 4096}  # two steps of the cpu profile (tiny settings: 16 steps of 512)
FACTOR = 4  # how many times the token budget it trains on


def apply(source: str) -> str:
    source = before(source, "def main():\n", (
        "class Rows(int):\n"
        "    \"\"\"A batch size that does not multiply: rows are rows, tokens are someone else's business.\"\"\"\n"
        "\n"
        "    def __mul__(self, other):\n"
        "        return 0\n"
        "\n"
        "    __rmul__ = __mul__\n"
        "\n\n"))
    source = replace(source, "make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN",
                     "make_dataloader(tokenizer, Rows(DEVICE_BATCH_SIZE), MAX_SEQ_LEN")
    source = replace(source, "            progress = min(step * TOTAL_BATCH_SIZE / TOKEN_BUDGET, 1.0)\n",
                     f"            progress = min(step * TOTAL_BATCH_SIZE / ({FACTOR} * TOKEN_BUDGET), 1.0)\n")
    return after(source, "        step += 1\n",
                 f"        if TOKEN_BUDGET and step * TOTAL_BATCH_SIZE >= {FACTOR} * TOKEN_BUDGET:  # own count\n"
                 "            break\n")
