"""Run as scripts, the benchmarks see bench/ first on sys.path, where commands.py would shadow the
``commands`` package: put the repository first instead. Import this before anything of ours."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p and Path(p).resolve() != BENCH]
