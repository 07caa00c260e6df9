"""Every Case of every family module, checked three ways: values against NumPy,
NumPy's dispatch building the same graph, and gradients of first and second order
against finite differences (see ``cases.py``)."""
from __future__ import annotations

import pytest

from .cases import all_cases, check_dispatch, check_gradients, check_values

CASES = []          # this module only runs the others' cases

_ALL = all_cases()


def _params(select):
    return [pytest.param(case, id=f"{family}:{case.id}") for family, case in _ALL if select(case)]


@pytest.mark.parametrize("case", _params(lambda case: True))
def test_values(case):
    check_values(case)


@pytest.mark.parametrize("case", _params(lambda case: case.dispatch))
def test_dispatch(case):
    check_dispatch(case)


@pytest.mark.parametrize("case", _params(lambda case: case.wrt and case.order))
def test_gradients(case):
    check_gradients(case)
