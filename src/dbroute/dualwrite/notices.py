"""Row images the capture triggers send to their own client: a commit mirrors without waiting.

Without them a dual-written commit waits for ``dbroute.collect()`` on the
primary before it can write the secondary: one more round trip, in series,
on every commit. With them (best-effort mode, dual-write on, a primary
reached directly, not through a transaction pooler), each connection of the
router's engines sets ``dbroute.notify`` once, to the most rows to send.
Then the first statement of a transaction that changes a captured table
sends, from its capture trigger, a ``NOTICE`` (SQLSTATE ``DBR10``) carrying
its row images in ``apply()``'s payload form as its detail, and as its
message its sequence number (1), the table's position, its key count and
the transaction id (a client that logs notices, as SQLAlchemy does at
``INFO``, logs no row values); a second such
statement sends a notice "2" without images, later ones nothing (one that
changed no row, like the idle half of an upsert, does not count). The
connection's :class:`Notices` (its notice handler) keeps what arrived.

At commit, a transaction whose one notice carried its changes is mirrored
from it straight away, while ``collect()`` runs on the primary meanwhile
(:class:`PendingCollect`) as the check: it still takes the transaction's
entries out of the journal, and it says how many notices the transaction's
triggers sent, by the server's count, which a savepoint rolled back takes
back with it (``set_config(..., true)`` is undone with the savepoint). If
that count is not one, or the keys, table or transaction differ, the images
sent may not be what commits: the keys sent and the transaction's go back
to the primary's journal in the transaction, and replay copies the
primary's rows over them after the commit
(:mod:`dbroute.dualwrite.mirror`). Any other transaction (no notice, two)
takes the usual path: ``collect()``, then the mirror.

Images cost the primary some work and the client a wake-up, wasted on a
transaction of several statements. So ``collect()`` also sets the
connection's mode for its next transactions: only counting statements
(``dbroute.notify = 'c0'``) after a transaction that wrote in several, and
images again after two transactions in a row that wrote in one.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import generators, pq
from sqlalchemy import Connection, Engine, event
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_only

from dbroute.dualwrite.capture import Changes, collected
from dbroute.dualwrite.codegen import NOTICE_SQLSTATE

__all__ = ["NOTICES", "Notices", "PendingCollect", "install", "notices_of"]

#: Connection-record ``info`` key of a connection's :class:`Notices`.
NOTICES = "dbroute.dualwrite.notices"
_SWITCH = "select set_config('dbroute.notify', %s, false)"
_COLLECT = b"select * from dbroute.collect_checked($1::integer)"


class Notices:
    """The dbroute notices of one connection's current transaction (its notice handler).

    Keeps the first and counts them all: only a transaction with exactly one,
    the first statement's, is mirrored from it.
    """

    __slots__ = ("count", "first", "xid")

    def __init__(self) -> None:
        self.xid: str | None = None
        self.count = 0
        #: ``(sequence, table position, keys, group JSON)`` of the first notice.
        self.first: tuple[int, int, int, str] | None = None

    def __call__(self, diagnostic: Any) -> None:
        """The notice handler: keep dbroute's notices, ignore the others."""
        if diagnostic.sqlstate != NOTICE_SQLSTATE:
            return
        message: str | None = diagnostic.message_primary
        if message is None:
            return
        _, sequence, table, keys, xid = message.split(":")
        if xid != self.xid:  # another transaction's first: outside a session, nobody cleared
            self.clear()
            self.xid = xid
        self.count += 1
        if self.first is None:
            group = diagnostic.message_detail or ""
            self.first = (int(sequence), int(table), int(keys), group)

    def clear(self) -> None:
        """Forget what was received (a transaction begins)."""
        self.xid = None
        self.count = 0
        self.first = None

    def single(self) -> Changes | None:
        """The transaction's changes when one notice, the first statement's, carried them all."""
        if self.count != 1 or self.first is None:
            return None
        sequence, table, keys, group = self.first
        if sequence != 1:
            return None
        return Changes("[" + group + "]", keys, self.xid, table, notices=1)


def notices_of(connection: Connection) -> Notices | None:
    """The :class:`Notices` of ``connection``'s DBAPI connection, if it asked for them."""
    notices: Notices | None = connection.info.get(NOTICES)
    return notices


def install(engine: Engine, max_rows: int) -> None:
    """Ask every new connection of ``engine`` for notices of row images (see the module).

    ``max_rows``: a statement changing more sends none.
    """

    def on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        notices = Notices()
        driver.add_notice_handler(notices)
        record.info[NOTICES] = notices
        # For the connection's life (a direct endpoint keeps session settings);
        # collect() switches it to counting while the images do not pay.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_SWITCH, (str(max_rows),))
        finally:
            cursor.close()
        dbapi_connection.commit()

    event.listen(engine, "connect", on_connect)


class PendingCollect:
    """``dbroute.collect_checked()`` sent now; :meth:`result` waits for its answer.

    Meanwhile the caller mirrors to the secondary: the primary's work and the
    secondary's overlap instead of following each other. Sent through libpq
    (psycopg's ``pgconn`` and its generators): psycopg's pipeline mode would
    add a round trip for its sync.
    """

    def __init__(self, connection: Connection, max_rows: int | None) -> None:
        self._async = connection.dialect.is_async
        driver: Any = connection.connection.driver_connection
        self._driver = driver
        pgconn = driver.pgconn
        limit = None if max_rows is None else str(max_rows).encode()
        pgconn.send_query_params(_COLLECT, [limit])
        self._wait(generators.send(pgconn))

    def result(self) -> Changes:
        """Wait for ``collect()``'s answer; raise its error as psycopg would."""
        results = self._wait(generators.fetch_many(self._driver.pgconn))
        encoding = self._driver.info.encoding
        for result in results:
            if result.status != pq.ExecStatus.TUPLES_OK:
                raise psycopg.errors.error_from_result(result, encoding=encoding)
        (result,) = results
        text = [result.get_value(0, column) for column in range(result.nfields)]
        payload, keys, xid, *numbers = (None if v is None else v.decode(encoding) for v in text)
        # As psycopg would type them; collected() reads an older setup's fewer columns.
        typed = [n if n is None else int(n) for n in numbers]
        return collected([payload, int(keys or 0), xid, *typed])

    def _wait(self, generator: Any) -> Any:
        waited = self._driver.wait(generator)
        return await_only(waited) if self._async else waited
