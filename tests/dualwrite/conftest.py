"""Fixtures of the dual-write tests (helpers live in support.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.dualwrite.support import create_schema

from dbroute import Router

MakeRouter = Callable[..., Router]


@pytest.fixture
def dual_router(make_router: MakeRouter) -> Router:
    """A dual-writing router (everyone on Neon) with the test schema set up."""
    router = make_router(dual_write=True)
    create_schema(router)
    router.setup()
    return router
