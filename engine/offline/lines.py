"""Reading event files: JSON lines, streamed rather than loaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def read_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes, without their line ending, streamed rather than loaded."""
    with path.open("rb") as handle:
        for line in handle:
            yield line.rstrip(b"\r\n")
