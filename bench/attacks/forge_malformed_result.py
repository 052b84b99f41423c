from ._edit import after, imports

NAME = "forge_malformed_result"
DESCRIPTION = ("sends a forged 'result' whose settings name a key Settings does not have: the runner's "
               "getattr(settings, key) raises, and run_experiment (which never raises for a bad run) raises")
EXPECT = {"rejected"}
STATIC = True  # only the names autoresearch.harness exports may be imported
RUNTIME = {"rejected"}  # what a fix should give: today run_experiment raises AttributeError (see OPEN)
RUNTIME_LAYER = "runner: result check"
OPEN = ("supervisor._classify trusts the shape of the channel's events: `{k: getattr(settings, k) for k in used}` "
        "raises on an unknown key (and a string val_bpb or peak_memory_mb raises TypeError), so a run that reaches "
        "the channel crashes the orchestrator instead of being rejected")


def apply(source: str) -> str:
    source = imports(source, "from autoresearch.harness import channel\n")
    return after(source, "    val_bpb = evaluate_bpb(train_model, tokenizer, DEVICE_BATCH_SIZE)\n",
                 "    channel.send(\"result\", val_bpb=val_bpb, settings={\"no_such_setting\": 1})\n")
