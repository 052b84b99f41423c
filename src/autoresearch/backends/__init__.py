"""Where experiments run: local worker processes, one device each (local.py), or Ray tasks on a cluster (ray.py).

Both implement the small Backend interface of base.py; the loop (loop/scheduler.py) does not know which it has.
"""

from autoresearch.backends.base import Backend, BackendError, Slot, make_backend

__all__ = ["Backend", "BackendError", "Slot", "make_backend"]
