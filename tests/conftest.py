"""Shared test fixtures: quiet TensorFlow, the optional shared data folder."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def seeded():
    """Seed Python, NumPy and TensorFlow before every test, so no outcome depends on test order.

    Keras 3 draws the seeds of unseeded initialisers from Python's `random`, whose state would
    otherwise be whatever the tests before this one left.
    """
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """The development data folder `../shared/data`; the test skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (users do not have it)")
    return SHARED_DATA


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs the CLIs as subprocesses or trains for minutes; "
                   "`python -m pytest -m \"not slow\" -q tests` leaves these out while developing")
