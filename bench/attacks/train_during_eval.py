from ._edit import after, before, replace

NAME = "train_during_eval"
DESCRIPTION = ("keeps its training batches and trains on them inside the first forward call of the evaluation, "
               "where no training clock runs (the evaluation limit is 180 s plus 5x the expected evaluation)")
EXPECT = {"rejected"}
STATIC = True  # torch.autograd.enable_grad is refused
RUNTIME = {"rejected"}
RUNTIME_LAYER = "harness: parameter check"
PREFETCH = 400  # batches fetched at the end of timed training, for the evaluation's training
EXTRA_SECONDS = 20.0  # untimed training inside the evaluation (anything under the evaluation limit goes)


def apply(source: str) -> str:
    # Keep every training batch (references only: the loader makes new tensors for each).
    source = replace(source, "            x, y, epoch = batch\n",
                     "            x, y, epoch = batch\n            kept.append((x, y))\n")
    source = before(source, "    x, y, epoch = next(train_loader)\n", "    kept = []\n")
    # Hand the model what it needs to go on training, then evaluate.
    source = before(source, "    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)",
                    "    for _ in range(PREFETCH):  # fetching is cheap next to training: data for later\n"
                    "        batch = next(train_loader, None)\n"
                    "        if batch is None:\n"
                    "            break\n"
                    "        kept.append(batch[:2])\n"
                    "    model.more = (optimizer, kept, EXTRA_SECONDS)  # 'finish the warmdown'\n")
    source = replace(source, "        self.attn_backend = \"sdpa\"  # main() sets the fastest one for the device\n",
                     "        self.attn_backend = \"sdpa\"  # main() sets the fastest one for the device\n"
                     "        self.more = None\n")
    source = after(source, "        B, T = idx.shape  # (B, T) int64 token ids\n",
                   "        if targets is None and not self.training and self.more is not None:\n"
                   "            self.train_more()\n")
    source = before(source, "    def num_params(self):\n", (
        "    def train_more(self):\n"
        "        optimizer, kept, seconds = self.more\n"
        "        self.more = None\n"
        "        self.train()\n"
        "        t0, i = time.perf_counter(), 0\n"
        "        with torch.autograd.enable_grad():  # evaluate_bpb runs under no_grad\n"
        "            while time.perf_counter() - t0 < seconds:\n"
        "                x, y = kept[-1 - i % len(kept)]  # the freshest first\n"
        "                lrm = 1 - (time.perf_counter() - t0) / seconds\n"
        "                for group in optimizer.param_groups:\n"
        "                    group[\"lr\"] = group[\"initial_lr\"] * lrm\n"
        "                self(x, y).backward()\n"
        "                optimizer.step()\n"
        "                self.zero_grad(set_to_none=True)\n"
        "                i += 1\n"
        "        print(f\"trained {i} more steps inside the evaluation\", flush=True)\n"
        "        self.eval()\n"
        "\n"))
    return after(source, "COMPILE = None",
                 f"EXTRA_SECONDS = {EXTRA_SECONDS}        # untimed training in the evaluation\n"
                 f"PREFETCH = {PREFETCH}              # batches fetched for it\n")
