"""Shared fixtures of the test suite."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (timing-independent, and two test processes under CI's
    2 cores do not oversubscribe); restores the previous count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
