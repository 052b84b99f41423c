from ._edit import before, imports

NAME = "child_process"
DESCRIPTION = "starts a background 'prefetcher' process and never stops it"
EXPECT = {"rejected"}
STATIC = True  # subprocess is forbidden
RUNTIME = {"rejected"}  # the runner kills what is left of the run's process group and refuses to score the run
REASON = "subprocess|runs as one process"
RUNTIME_LAYER = "runner: leftover processes"
RUNTIME_REASON = "left \\d+ process"


def apply(source: str) -> str:
    source = imports(source, "import subprocess\n")
    return before(source, "    tokenizer = Tokenizer.load()",
                  "    prefetcher = subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(3600)\"])"
                  "  # warms caches in the background\n")
