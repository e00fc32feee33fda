"""What a SQL statement is, read from its text: fingerprint, kind, ordering.

Shadow reads decide from the SQL the driver receives (after SQLAlchemy
compiled it), so ORM queries, Core selects and ``text()`` are judged by the
same rules. The text is reduced to a *skeleton* first: comments removed, every
literal and bind parameter replaced by ``?``, whitespace collapsed, lower case.
Keywords are then looked for in the skeleton, never inside a string literal.

The rules are conservative: when in doubt a statement is not shadowed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["StatementInfo", "StatementKind", "analyse", "skeleton"]


class StatementKind(StrEnum):
    """What a statement does, as far as shadowing is concerned."""

    #: A plain read: shadowed when sampled.
    READ = "read"
    #: Writes or changes session state: never shadowed, and the transaction
    #: it ran in is no longer shadowed either (its reads see its own writes).
    WRITE = "write"
    #: Transaction control (SAVEPOINT, RELEASE): neither a read nor a write.
    CONTROL = "control"
    #: ``SELECT ... FOR UPDATE/SHARE``: takes row locks; skipped.
    LOCKING = "locking"
    #: Calls a function whose result differs per call or per server (``now()``,
    #: ``random()``, ``pg_backend_pid()``...) or reads system columns; skipped.
    VOLATILE = "volatile"
    #: ``LIMIT``/``OFFSET``/``DISTINCT ON`` without a top-level ``ORDER BY``:
    #: either database may legitimately return other rows; skipped.
    NONDETERMINISTIC = "nondeterministic"
    #: Anything else that reads (``SHOW``, ``EXPLAIN``): not shadowed.
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """The analysis of one SQL text."""

    #: Short stable id of the normalised statement (16 hex digits).
    fingerprint: str
    #: The normalised statement: no literal values, safe to log.
    normalized: str
    kind: StatementKind
    #: Whether the statement has a top-level ``ORDER BY`` (compare rows in order).
    ordered: bool


_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_LITERALS = re.compile(
    r"""
      (?:[eEbBxXuU]&?)?'(?:[^']|'')*'     # 'string', E'...', B'...', U&'...'
    | \$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$   # dollar quoting
    | %\(\w+\)s | %s | \$\d+ | (?<![\w:]):(?!:)\w+   # bind parameters of any style
    | (?<![\w$.])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?   # numbers
    """,
    re.S | re.X,
)
_IDENTIFIER = re.compile(r'"(?:[^"]|"")*"')
_LISTS = re.compile(r"\?(?:\s*,\s*\?)+")
_SPACE = re.compile(r"\s+")

_LOCKING = re.compile(r"\bfor\s+(?:no\s+key\s+update|update|key\s+share|share)\b")
_WRITE_WORDS = re.compile(r"\b(?:insert|update|delete|merge|into)\b")
_CONTROL = re.compile(r"^(?:savepoint|release|rollback\s+to)\b")
_READ_HEADS = ("select", "with", "values", "table", "(")
_OTHER_HEADS = ("show", "explain")
# Side effects that are not rolled back, or lock: the transaction counts as written.
_SIDE_EFFECTS = re.compile(
    r"\b(?:nextval|setval|pg_advisory\w*|pg_try_advisory\w*|pg_notify|set_config|dblink\w*"
    r"|lo_\w+|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_stat_reset\w*"
    r"|pg_switch_wal|pg_create\w*|pg_drop\w*|txid_current|pg_current_xact_id)\s*\("
)
# Values that differ per call or per server, and physical row identity.
_VOLATILE = re.compile(
    r"\b(?:random|setseed|gen_random_uuid|uuid_generate_\w+|now|clock_timestamp"
    r"|statement_timestamp|transaction_timestamp|timeofday|currval|lastval"
    r"|pg_backend_pid|inet_server_\w+|inet_client_\w+|version|pg_postmaster_start_time"
    r"|current_setting|pg_current_wal_\w+|txid_\w+|pg_last_\w+)\s*\("
    r"|\b(?:current_timestamp|current_date|current_time|localtime|localtimestamp"
    r"|ctid|xmin|xmax|cmin|cmax|tablesample)\b"
)
_ORDER_BY = re.compile(r"\border\s+by\b")
_UNSTABLE = re.compile(r"\b(?:limit|offset|fetch\s+(?:first|next)|distinct\s+on)\b")


def skeleton(sql: str) -> str:
    """``sql`` without comments or literal values, whitespace collapsed, lower case."""
    text = _COMMENTS.sub(" ", sql)
    text = _LITERALS.sub("?", text)
    text = _LISTS.sub("?", text)
    return _SPACE.sub(" ", text).strip().lower()


def _top_level(text: str) -> str:
    """``text`` with everything inside parentheses removed (depth 0 only)."""
    out: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _kind(words: str, ordered: bool) -> StatementKind:
    if _CONTROL.match(words):
        return StatementKind.CONTROL
    if not words.startswith(_READ_HEADS):
        return StatementKind.OTHER if words.startswith(_OTHER_HEADS) else StatementKind.WRITE
    if _SIDE_EFFECTS.search(words):
        return StatementKind.WRITE
    if _LOCKING.search(words):
        return StatementKind.LOCKING
    if _WRITE_WORDS.search(words):  # data-modifying CTE, SELECT INTO
        return StatementKind.WRITE
    if _VOLATILE.search(words):
        return StatementKind.VOLATILE
    if not ordered and _UNSTABLE.search(words):
        return StatementKind.NONDETERMINISTIC
    return StatementKind.READ


def _analyse(sql: str) -> StatementInfo:
    normalized = skeleton(sql)
    # Keywords are matched with quoted identifiers blanked: a column named
    # "update" must not look like a write (the fingerprint keeps the names).
    words = _IDENTIFIER.sub("_q_", normalized)
    ordered = bool(_ORDER_BY.search(_top_level(words)))
    digest = hashlib.blake2b(normalized.encode(), digest_size=8).hexdigest()
    return StatementInfo(digest, normalized, _kind(words, ordered), ordered)


_CACHE: dict[str, StatementInfo] = {}
_CACHE_LIMIT = 4096


def analyse(sql: str) -> StatementInfo:
    """The :class:`StatementInfo` of ``sql``; cached, SQLAlchemy renders the same text again."""
    info = _CACHE.get(sql)
    if info is None:
        info = _analyse(sql)
        # No lock (none to be held at a fork either): dict operations are atomic,
        # and a race between threads only clears twice or overshoots by a few.
        if len(_CACHE) >= _CACHE_LIMIT:  # statements with inlined values: start over
            _CACHE.clear()
        _CACHE[sql] = info
    return info
