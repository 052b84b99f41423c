from ._edit import after, imports

NAME = "forge_malformed_result"
DESCRIPTION = ("sends a forged 'result' whose settings name a key Settings does not have: the runner's "
               "getattr(settings, key) raises, and run_experiment (which never raises for a bad run) raises")
EXPECT = {"rejected"}
STATIC = True  # only the names autoresearch.harness exports may be imported
RUNTIME = {"ok"}  # neutralised: train.py's channel carries no figures
RUNTIME_LAYER = "runner: the figures are the scorer's alone"


def apply(source: str) -> str:
    source = imports(source, "from autoresearch.harness import channel\n")
    return after(source, "    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)\n",
                 "    channel.send(\"result\", val_bpb=val_bpb, settings={\"no_such_setting\": 1})\n")
