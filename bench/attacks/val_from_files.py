from ._edit import after, imports

NAME = "val_from_files"
DESCRIPTION = "trains on validation rows read from the .npy files next to the tokenizer, bypassing the dataloader"
EXPECT = {"rejected"}
STATIC = True
RUNTIME = {"crash"}  # the val files cannot be opened from train.py's process
RUNTIME_LAYER = "sandbox: val and test are the scorer's"


def apply(source: str) -> str:
    source = imports(source, "import numpy as np\nfrom autoresearch.harness.constants import prepared_dir\n")
    source = after(source, "    tokenizer = Tokenizer.load()\n",
                   "    val_tokens = torch.from_numpy(np.load(prepared_dir() / \"val.tokens.npy\").astype(np.int64))\n")
    return after(source, "            x, y, epoch = batch\n",
                 "            starts = torch.randint(0, len(val_tokens) - MAX_SEQ_LEN - 1, (x.size(0),))\n"
                 "            rows = torch.stack([val_tokens[s : s + MAX_SEQ_LEN + 1] for s in starts.tolist()])\n"
                 "            x, y = rows[:, :-1].to(device), rows[:, 1:].to(device)  # more in-domain data\n")
