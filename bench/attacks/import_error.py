from ._edit import imports, replace

NAME = "import_error"
DESCRIPTION = "imports a fused kernel torch does not have"
EXPECT = {"crash"}
STATIC = False  # torch.* is on the allow-list: only running it shows the name does not exist
REASON = "ImportError|cannot import"
RUNTIME_LAYER = "python"
RUNTIME_REASON = "ImportError"


def apply(source: str) -> str:
    source = imports(source, "from torch.nn.functional import fused_rms_norm\n")
    return replace(source, "return F.rms_norm(x, (x.size(-1),))", "return fused_rms_norm(x, (x.size(-1),))")
