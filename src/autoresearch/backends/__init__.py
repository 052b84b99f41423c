"""Where experiments run: local worker processes, one device each (local.py), or Ray tasks on a cluster (ray.py).

Both implement the small Backend interface of base.py; the loop (loop/scheduler.py) does not know which it has.
Backends are registered by name, the built-ins the same way as a plugin's: an entry point in the group
`autoresearch.backends` naming a factory called as factory(profile=..., workers=..., per_device=..., address=...).
"""

from __future__ import annotations

from autoresearch.backends.base import Backend, BackendError, Slot
from autoresearch.plugins import Registry

__all__ = ["Backend", "BackendError", "Slot", "make_backend", "register"]

BACKENDS = Registry("autoresearch.backends")
register = BACKENDS.register


@register("local")
def _local(*, profile: str, workers: int | None, per_device: int, **_) -> Backend:
    from autoresearch.backends.local import LocalBackend

    return LocalBackend(profile=profile, workers=workers, per_device=per_device)


@register("ray")
def _ray(*, profile: str, workers: int | None, per_device: int, address: str | None = None, **_) -> Backend:
    from autoresearch.backends.ray import RayBackend

    return RayBackend(profile=profile, workers=workers, per_device=per_device, address=address)


def make_backend(name: str, *, profile: str, workers: int | None = None, per_device: int = 1,
                 address: str | None = None) -> Backend:
    """The backend the `run` command asked for (`--backend`, `--workers`, `--per-device`, `--address`)."""
    if workers is not None and workers < 1:
        raise BackendError(f"--workers must be at least 1, not {workers}")
    if per_device < 1:
        raise BackendError(f"--per-device must be at least 1, not {per_device}")
    factory = BACKENDS.get(name)
    if factory is None:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS.names())}")
    return factory(profile=profile, workers=workers, per_device=per_device, address=address)
