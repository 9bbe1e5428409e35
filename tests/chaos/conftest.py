"""The chaos tooling lives in scripts/chaos (plain scripts, not a package): import it from there."""

from __future__ import annotations

import sys
from pathlib import Path

CHAOS_DIR = Path(__file__).resolve().parents[2] / "scripts" / "chaos"
if str(CHAOS_DIR) not in sys.path:
    sys.path.insert(0, str(CHAOS_DIR))
