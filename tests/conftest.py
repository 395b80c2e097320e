import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# A closed gradio_client drops its heartbeat stream only when the next heartbeat arrives (a browser's closed tab
# drops it at once): heartbeats every second let the apps under test see a closed client within a second, not 15.
os.environ.setdefault("GRADIO_HEARTBEAT_INTERVAL", "1")
sys.path.insert(0, str(ROOT))

# Everything the run writes to a temp directory (this process's, the apps and commands it starts,
# Gradio's cache, and what processes killed on purpose leave) goes in one folder, removed at exit.
# Registered before anything else, so it runs after every other exit handler.
RUN_TEMP = Path(tempfile.mkdtemp(prefix="charrnn-tests-"))
atexit.register(shutil.rmtree, RUN_TEMP, True)
os.environ["TMPDIR"] = str(RUN_TEMP)
os.environ["GRADIO_TEMP_DIR"] = str(RUN_TEMP / "gradio")
tempfile.tempdir = None  # read TMPDIR again


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests use tiny models, which run fastest on one thread; on a machine whose cores are already
    busy, two threads make each small op wait for a descheduled thread (a 60-step sample: 0.03 s vs 6 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPORA.is_dir():
        pytest.skip(f"needs the public-domain corpora in {CORPORA} (not committed into the project)")
    return CORPORA


@pytest.fixture(scope="module")
def checkpoints() -> Path:
    """A folder of tiny trained models standing in for the shipped ones (tests/app_testing.py)."""
    from app_testing import tiny_checkpoints

    return tiny_checkpoints()


@pytest.fixture
def studio(checkpoints, tmp_path):
    """The app's handlers on those models, with this test's own sessions folder."""
    from webapp.models import Studio
    from webapp.session import Sessions

    return Studio(checkpoints, Sessions(tmp_path / "sessions"))
