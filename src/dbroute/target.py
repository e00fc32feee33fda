"""The two databases of a migration, and why a key was routed to one of them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reason", "Target"]


class Target(StrEnum):
    """A database of the migration. The values are stable: used in env, logs and metrics."""

    NEON = "neon"
    RDS = "rds"

    @property
    def other(self) -> Target:
        """The other database (the secondary of a dual-write, the shadow of a read)."""
        return Target.RDS if self is Target.NEON else Target.NEON


class Reason(StrEnum):
    """Why a key went where it went (the ``dbroute.reason`` metric attribute)."""

    HASH = "hash"
    FORCE = "force"
    KILL_SWITCH = "kill_switch"
