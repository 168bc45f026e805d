"""What the fault tests measured: printed, and appended as JSON lines to $RELIABILITY_REPORT when it is set
(RELIABILITY.md quotes such a run)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a test's figures under its name."""

    def record(**figures: Any) -> None:
        line = orjson.dumps({"test": request.node.name, **figures}).decode()
        print(f"\nRELIABILITY {line}")
        target = os.environ.get("RELIABILITY_REPORT")
        if target:
            with Path(target).open("a") as handle:
                handle.write(line + "\n")

    return record
