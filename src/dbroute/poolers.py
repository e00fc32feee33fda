"""Recognising URLs of transaction-mode connection poolers (Neon's, RDS Proxy).

Behind such a pooler, consecutive transactions of one client may run on
different server connections, and a session-level setting made by one client
stays on its server connection for the next client. Routed sessions do not
care (every setting dbroute makes there is transaction-local), but
dual-write's mirror connections keep session settings that switch off
triggers and change capture (``session_replication_role``,
``dbroute.applying``): through a pooler they would reach other clients and
their writes would go unmirrored. Settings refuse such a mirror URL.

Only poolers that a host name gives away are recognised; a self-hosted
PgBouncer is not (docs/runbook.md#pooling-pgbouncer-or-rds-proxy).
"""

from __future__ import annotations

from sqlalchemy.engine import URL

__all__ = ["transaction_pooler"]


def transaction_pooler(url: URL) -> str | None:
    """Which transaction-mode pooler ``url``'s host names, or ``None``."""
    host = (url.host or "").lower()
    first, _, rest = host.partition(".")
    if first.endswith("-pooler") and rest.endswith("neon.tech"):
        return "Neon's connection pooler (PgBouncer in transaction mode)"
    if rest.startswith("proxy-") and rest.endswith(".rds.amazonaws.com"):
        return "RDS Proxy"
    return None
