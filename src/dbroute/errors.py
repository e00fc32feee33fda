"""The exceptions dbroute raises. Every one is a :class:`DBRouteError`.

Messages say what was wrong and what to do about it, and never contain a
password: dbroute renders URLs with the password masked before they reach a
message, a log record or a span.
"""

from __future__ import annotations

__all__ = [
    "AssessError",
    "ConfigurationError",
    "DBRouteError",
    "DualWriteError",
    "DualWriteNotSetUpError",
    "DualWriteSetupError",
    "InvalidKeyError",
    "PhaseStoreError",
    "PhaseTransitionError",
    "PreconditionError",
    "RepairError",
    "SecondaryWriteError",
    "SegmentTimeoutError",
    "SequenceSyncError",
    "ShadowReadsDisabledError",
    "ValidateError",
    "WriteConflictError",
]


class DBRouteError(Exception):
    """Base class of every error dbroute raises on purpose."""


class ConfigurationError(DBRouteError, ValueError):
    """The configuration (``DBROUTE_*`` environment or :class:`RoutingSettings`) is invalid.

    Raised at start-up, by ``RoutingSettings()`` itself, so a bad flag never
    reaches traffic. The message names each bad variable and the rule it broke.
    """


class InvalidKeyError(DBRouteError, ValueError):
    """A routing key is empty or otherwise unusable (a wrong *type* raises ``TypeError``)."""


class AssessError(DBRouteError):
    """``dbroute assess`` could not read the database it was asked to assess."""


class PhaseTransitionError(DBRouteError):
    """A phase change that is not allowed (skips phases, wrong direction, already there)."""


class PreconditionError(DBRouteError):
    """``dbroute advance``/``rollback`` refused: a precondition of the phase change failed.

    The message lists every failed check and what to do about it.
    """


class PhaseStoreError(DBRouteError):
    """The phase table (``dbroute.phase``) could not be read or written on either database."""


class DualWriteError(DBRouteError):
    """Base class of the dual-write errors (``docs/dual-write.md``)."""


class DualWriteSetupError(DualWriteError):
    """``dbroute setup``/``teardown`` refused; the message names what and why.

    Tables without a primary key, databases whose tables differ, or a journal
    still holding entries.
    """


class DualWriteNotSetUpError(DualWriteError):
    """Dual-write is on but a database lacks what ``dbroute setup`` installs; run it."""


class SecondaryWriteError(DualWriteError):
    """Strict mode: the secondary could not be written, so the commit was refused.

    Nothing was committed; the session's transaction must be rolled back (a
    ``with session.begin():`` block does it). ``keys`` counts the rows concerned.
    """


class WriteConflictError(SecondaryWriteError):
    """Both databases changed the same rows since they were last in sync (strict mode).

    ``conflicts`` lists them; best-effort mode journals and reports them instead.
    """

    def __init__(self, message: str, conflicts: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class ValidateError(DBRouteError):
    """Base class of the validation errors (``dbroute validate``, ``docs/validation.md``)."""


class SegmentTimeoutError(ValidateError):
    """A key segment could not be checksummed even alone within the statement timeout."""


class RepairError(ValidateError):
    """A repair did not leave the repaired keys equal on both databases (or was refused)."""


class SequenceSyncError(RepairError):
    """``dbroute sequences sync`` refused to move a sequence.

    The wanted next value lies outside the sequence's or its column's range
    (the message says how much ``--headroom`` fits), or the sequence stayed
    busy (a long transaction holding it) past the lock timeout.
    """


class ShadowReadsDisabledError(DBRouteError):
    """``router.shadow`` was used on a router without shadow reads.

    Set ``DBROUTE_SHADOW_READ_PERCENT`` (or ``shadow_read_percent``) above 0.
    """
