"""Shared pytest fixtures: the package on the path and the real HC18 data when present."""
import sys
from pathlib import Path

import pytest

MODELS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = MODELS_DIR.parent
HC18_ROOT = REPO_ROOT.parent / "shared" / "data" / "hc18"

if str(MODELS_DIR) not in sys.path:
    sys.path.insert(0, str(MODELS_DIR))


@pytest.fixture(scope="session")
def hc18_root() -> Path:
    """The real HC18 folder (``../shared/data/hc18`` from the repository root), or skip."""
    if not (HC18_ROOT / "training_set" / "training_set_pixel_size_and_HC.csv").is_file():
        pytest.skip(f"HC18 data not found at {HC18_ROOT}: tests on the real scans are skipped")
    return HC18_ROOT
