"""Every command validates the ESCALERA_* settings before it does anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", [["kafka"], ["kafka", "--port", "1"]])
def test_a_wrong_setting_stops_any_command_naming_the_variable(command: list[str]) -> None:
    env = {**os.environ, "ESCALERA_WEB_PORT": "99999"}
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "ESCALERA_WEB_PORT" in result.stderr
    assert "Traceback" not in result.stderr
