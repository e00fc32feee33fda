"""The exceptions dbroute raises. Every one is a :class:`DBRouteError`.

Messages say what was wrong and what to do about it, and never contain a
password: dbroute renders URLs with the password masked before they reach a
message, a log record or a span.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "DBRouteError", "InvalidKeyError"]


class DBRouteError(Exception):
    """Base class of every error dbroute raises on purpose."""


class ConfigurationError(DBRouteError, ValueError):
    """The configuration (``DBROUTE_*`` environment or :class:`RoutingSettings`) is invalid.

    Raised at start-up, by ``RoutingSettings()`` itself, so a bad flag never
    reaches traffic. The message names each bad variable and the rule it broke.
    """


class InvalidKeyError(DBRouteError, ValueError):
    """A routing key is empty or otherwise unusable (a wrong *type* raises ``TypeError``)."""
