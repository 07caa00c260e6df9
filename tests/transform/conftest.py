"""Fixtures shared by the code-generation tests."""
import pytest

import neuronika as nk


@pytest.fixture
def cleared_caches():
    """Every cache emptied before the test and after it (programs, traces, families)."""
    nk.transform.cache_clear()
    yield
    nk.transform.cache_clear()
