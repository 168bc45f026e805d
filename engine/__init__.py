"""Escalera: an event-driven customer-loyalty engine on Apache Kafka."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`engine.__version__`: the installed package's version (pyproject.toml's), read when asked for."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("escalera")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown (not installed)"
