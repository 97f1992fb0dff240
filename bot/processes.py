"""CLI commands that run pvebot itself: demo, shell, worker and serve."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register the process commands on the ``pvebot`` parser (filled in by the command-language work)."""
    _ = argparse
