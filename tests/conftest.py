import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def shared_dir():
    """The shared data folder: $LORAFAST_SHARED, else ../shared beside the repo root."""
    return pathlib.Path(os.environ.get("LORAFAST_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared():
    """Path of ../shared. Skips when it is absent, but fails under CI=true."""
    path = shared_dir()
    if not (path / "models").is_dir():
        message = f"shared folder not found at {path} (set LORAFAST_SHARED)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
