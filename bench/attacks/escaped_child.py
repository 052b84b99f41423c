from ._edit import before, imports

NAME = "escaped_child"
DESCRIPTION = "starts a background process in a new session (outside the run's process group) and leaves it running"
EXPECT = {"rejected"}
STATIC = True  # subprocess is forbidden
RUNTIME = {"rejected"}  # the runner must find it although it left the process group
REASON = "subprocess|runs as one process"
RUNTIME_LAYER = "runner: leftover processes"
RUNTIME_REASON = "left \\d+ process"


def apply(source: str) -> str:
    source = imports(source, "import subprocess\n")
    return before(source, "    tokenizer = Tokenizer.load()",
                  "    daemon = subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(3600)\"],"
                  " start_new_session=True)  # survives us\n")
