import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(ROOT))


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPORA.is_dir():
        pytest.skip(f"needs the public-domain corpora in {CORPORA} (not committed into the project)")
    return CORPORA
