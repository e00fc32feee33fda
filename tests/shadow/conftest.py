"""Shadow-read fixtures: a router shadowing every read, with ``items`` on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dbroute import Router

from .shadow_helpers import seed

ShadowRouter = Callable[..., Router]


@pytest.fixture
def shadow_router(make_router: Callable[..., Router]) -> ShadowRouter:
    """``make_router`` with every read shadowed, no recheck delay, and ``items`` seeded."""

    def make(**overrides: Any) -> Router:
        settings: dict[str, Any] = {
            "shadow_read_percent": 100,
            "shadow_recheck_delay": 0,
            "shadow_workers": 1,  # outcomes arrive in query order
            **overrides,
        }
        router = make_router(**settings)
        seed(router)
        return router

    return make
