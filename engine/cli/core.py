"""Placeholder: filled in by the issue that owns these commands."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `escalera` CLI."""
