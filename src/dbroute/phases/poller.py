"""Keeps a running Router on the stored migration phase, without a restart.

Started by the Router when ``DBROUTE_PHASE_POLL_SECONDS`` > 0 and no
``DBROUTE_PHASE`` pins the phase: it reads the phase table once before the
router serves (so a process started during ``rds_only`` never routes to Neon),
then re-reads it every interval on a daemon thread and swaps the router's
:class:`~dbroute.routing_state.RoutingState` when the version changes.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from dbroute.errors import PhaseStoreError
from dbroute.forking import on_fork_in_child
from dbroute.phases.model import Phase
from dbroute.phases.store import StoredPhase, read_current
from dbroute.routing_state import RoutingState
from dbroute.target import Target
from dbroute.telemetry import PHASE_CHANGES, PHASE_POLL_ERRORS, phase_attributes

if TYPE_CHECKING:
    from dbroute.router import Router

__all__ = ["PhasePoller"]

log = logging.getLogger("dbroute.phases")


class PhasePoller:
    """Re-reads the phase table every ``interval`` seconds and updates ``router``."""

    def __init__(self, router: Router, interval: float) -> None:
        self._router = router
        self._interval = interval
        # Overrides (kill switch, forced keys) come from settings and stay in force.
        self._base = RoutingState.from_settings(router.settings)
        self._engines = {t: router.engine(t) for t in Target}
        self._stopped = threading.Event()
        self._thread = self._new_thread()
        # A forked child (gunicorn --preload) has no thread of its parent's: it
        # polls again, or it would keep routing on the phase it was forked in.
        on_fork_in_child(self, PhasePoller._after_fork)

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name="dbroute-phase-poller", daemon=True)

    def _after_fork(self) -> None:
        was_polling = self._thread.ident is not None and not self._stopped.is_set()
        self._stopped = threading.Event()
        self._thread = self._new_thread()
        if was_polling:
            self._thread.start()

    @classmethod
    def start(cls, router: Router, interval: float) -> PhasePoller:
        """Load the stored phase into ``router`` now, then keep polling in the background.

        Raises :class:`~dbroute.errors.PhaseStoreError` when neither database
        can be read: routing without knowing the phase could send users to a
        database that no longer receives writes.
        """
        poller = cls(router, interval)
        poller.refresh()
        poller._thread.start()
        return poller

    def refresh(self) -> bool:
        """Read the phase table once; swap the router's state if it changed. True if it did."""
        stored = read_current(self._engines).current
        state = self._router.routing_state
        if state.phase is not None and stored.version == state.phase_version:
            return False
        self._apply(stored)
        return True

    def _apply(self, stored: StoredPhase) -> None:
        previous = self._router.routing_state
        new = self._base.with_phase(stored.phase, stored.rds_percent, stored.version)
        if stored.phase is Phase.RDS_ONLY and (new.kill_switch or new.force_neon):
            log.error(
                "phase rds_only while DBROUTE_KILL_SWITCH/DBROUTE_FORCE_NEON send keys to Neon, "
                "which no longer receives writes: remove them or roll back to rds_primary"
            )
        self._router.set_routing_state(new)
        PHASE_CHANGES.add(1, phase_attributes(stored.phase))
        log.warning(
            "dbroute phase is now %s (%s %% on RDS, dual-write %s, version %d; was %s)",
            stored.phase.value,
            new.rds_percent,
            "on" if new.dual_write else "off",
            stored.version,
            previous.phase.value if previous.phase else "unset",
        )

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.refresh()
            except PhaseStoreError as exc:
                # Keep routing on the last known phase; both databases are down anyway.
                PHASE_POLL_ERRORS.add(1)
                log.warning("cannot re-read the dbroute phase: %s", exc)
            except Exception:
                PHASE_POLL_ERRORS.add(1)
                log.exception("dbroute phase poller failed; keeping the last known phase")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (the router's ``dispose()`` calls this)."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
