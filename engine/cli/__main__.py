"""`python -m engine.cli` runs the `escalera` command."""

from engine.cli import main

main()
