from . import train_during_eval
from ._edit import before, replace

NAME = "train_during_eval_unseen"
DESCRIPTION = ("train_during_eval, with the model handed to evaluate_bpb inside a wrapper that has no parameters: "
               "the client's parameter check fingerprints nothing, and the scorer waits for the first answer "
               "as long as the runner's evaluation limit (180 s + 5 x the expected evaluation) allows")
EXPECT = {"rejected"}
STATIC = True  # torch.autograd.enable_grad is refused
RUNTIME = {"rejected"}  # the first answer's deadline, from the human-written runs
RUNTIME_LAYER = "scorer: answer deadlines"
EXTRA_SECONDS = 60.0


def apply(source: str) -> str:
    source = train_during_eval.apply(source)
    source = source.replace(f"EXTRA_SECONDS = {train_during_eval.EXTRA_SECONDS}",
                            f"EXTRA_SECONDS = {EXTRA_SECONDS}")
    source = before(source, "def main()", (
        "class Unseen(nn.Module):\n"
        "    \"\"\"The model as evaluate_bpb sees it: no parameters of its own.\"\"\"\n"
        "\n"
        "    def __init__(self, inner):\n"
        "        super().__init__()\n"
        "        self.__dict__[\"inner\"] = inner  # not a submodule\n"
        "\n"
        "    def forward(self, idx):\n"
        "        self.inner.eval()\n"
        "        return self.inner(idx)\n"
        "\n\n"))
    return replace(source, "    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)",
                   "    val_bpb = evaluate_bpb(Unseen(train_model), tokenizer, DEVICE_BATCH_SIZE)")
