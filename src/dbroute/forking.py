"""After ``os.fork()``: nothing of the parent's is used by the child by mistake.

A forked child inherits copies of its parent's sockets, pipes and locks, but
none of its threads. Pre-forking servers (gunicorn ``--preload``, uWSGI,
Celery's prefork pool) build the Router once in the parent, then fork the
workers. Each dbroute object that holds such state registers here and resets
itself in the child, so those servers need no post-fork hook for dbroute:

* the router's pools and dual-write's start empty in the child (shadow
  reads' lag pools are made anew); the parent's pooled connections stay the
  parent's (sharing one would interleave two processes' messages on one
  socket). SQLAlchemy's own advice, ``dispose(close=False)``;
* background threads (the phase poller) run again in the child;
* locks are new (another thread of the parent may have held one at the fork),
  and work queued or in flight in the parent is the parent's.

Registrations hold their object weakly: a router that is gone costs nothing.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["fresh_pool_after_fork", "on_fork_in_child", "renewed_event"]

T = TypeVar("T")
E = TypeVar("E", Engine, AsyncEngine)


def on_fork_in_child(obj: T, reset: Callable[[T], None]) -> None:
    """Call ``reset(obj)`` in the child after each ``os.fork()``, as long as ``obj`` lives.

    ``reset`` runs right after the fork, in the only thread of the child: it must
    not take a lock the parent's other threads may have held.
    """
    if not hasattr(os, "register_at_fork"):  # Windows: there is no fork
        return
    ref = weakref.ref(obj)

    def in_child() -> None:
        target = ref()
        if target is not None:
            reset(target)

    os.register_at_fork(after_in_child=in_child)


def fresh_pool_after_fork(engine: E) -> E:
    """``engine`` (sync or asyncio), whose pool a forked child replaces with an empty one.

    Returned for chaining.
    """
    # An AsyncEngine's pool is its sync engine's. close=False: the old pool's
    # connections are the parent's; psycopg never closes a connection it
    # collects in another process than its own.
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    on_fork_in_child(sync, lambda e: e.dispose(close=False))
    return engine


def renewed_event(event: threading.Event) -> threading.Event:
    """A new event in ``event``'s state, for a forked child (the old one's lock may be held)."""
    renewed = threading.Event()
    if event.is_set():  # reads a flag: takes no lock
        renewed.set()
    return renewed
