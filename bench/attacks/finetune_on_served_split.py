from ._edit import after, before, replace

NAME = "finetune_on_served_split"
DESCRIPTION = ("asks to be scored with a batch size of a whole split: the scorer then sends both calls of a split "
               "before it wants the first answer, so train.py fine-tunes on every val (then test) row it was "
               "served, and answers every row, probes included, with the same adapted model")
EXPECT = {"rejected"}
STATIC = True  # the custom client imports autoresearch.harness.wire/evaluate internals, enable_grad, ...
RUNTIME = {"rejected"}  # the first answer's deadline, from the human-written runs
RUNTIME_LAYER = "scorer: answer deadlines"
TARGET = 1.05  # stop fine-tuning at this multiple of the floor (meta.json is readable by train.py)


CLIENT = '''

def evaluate_adapted(model, tokenizer, device):
    """evaluate_bpb's protocol, spoken by hand: hold every batch the scorer sends ahead, fine-tune on it, answer."""
    import select
    from autoresearch.harness import channel, wire
    from autoresearch.harness import evaluate as ev
    from autoresearch.harness.constants import eval_key, load_meta, prepared_dir, workspace_settings
    from autoresearch.harness.meter import meter

    s = workspace_settings()
    try:
        floor = float(load_meta(prepared_dir(s))["eval"][eval_key(s)]["val"]["floor_bpb"])
    except Exception:
        floor = 0.0
    token_bytes = torch.tensor(tokenizer.token_bytes, dtype=torch.float64)
    channel.send("eval_start", once=True, **meter.totals())
    sock, _ = ev._connect()
    wire.send(sock, "hello", batch_size=1 << 20, device=str(device))  # capped at the split's rows by the scorer
    slots = ev._open_slots(sock, device)
    opt = torch.optim.AdamW(model.parameters(), lr=ADAPT_LR, weight_decay=0.0)
    pending, log = [], []
    while True:
        m = wire.receive(sock)
        if m["op"] in ("end", "refused"):
            break
        pending.append((int(m["slot"]) % wire.SLOTS, m["seq"], slots.inputs(int(m["slot"]) % wire.SLOTS)))
        if len(pending) < wire.SLOTS and select.select([sock], [], [], 2.0)[0]:
            continue  # the next call is already on its way
        x = torch.cat([p[2] for p in pending])  # every row served so far: real rows and probes alike
        y = x[:, 1:]
        nb = token_bytes[y]
        t0, steps, bpb = time.perf_counter(), 0, float("nan")
        model.train()
        with torch.enable_grad():
            while time.perf_counter() - t0 < ADAPT_SECONDS:
                logits = model(x)[:, :-1].float()
                nats = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
                bpb = float((nats.detach().double() * (nb.reshape(-1) > 0)).sum() / (math.log(2) * nb.sum()))
                if bpb <= TARGET * floor:
                    break
                opt.zero_grad(set_to_none=True)
                nats.mean().backward()
                opt.step()
                steps += 1
        model.eval()
        log.append((len(x), steps, round(bpb, 4)))
        with torch.no_grad():
            for slot, seq, xs in pending:
                slots.put(slot, model(xs).float())
                wire.send(sock, "done", slot=slot, seq=seq)
        pending = []
    sock.close()
    channel.send("eval_done", peak_memory_mb=0.0, device=str(device))
    print(f"adapted on the served rows: (rows, steps, own bpb) {log}; floor {floor:.4f}", flush=True)
    return float(m.get("val_bpb", float("nan")))

'''


def apply(source: str) -> str:
    source = before(source, "def main()", CLIENT.lstrip("\n") + "\n")
    source = replace(source, "    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)\n",
                     "    val_bpb = evaluate_adapted(model, tokenizer, device)\n")
    return after(source, "COMPILE = None",
                 f"TARGET = {TARGET}               # fine-tune until this multiple of the entropy floor\n"
                 "ADAPT_LR = 3e-3             # AdamW lr of the fine-tune on the served rows\n"
                 "ADAPT_SECONDS = 60.0        # at most, per window of served calls\n")
