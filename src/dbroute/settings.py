"""Configuration from ``DBROUTE_*`` environment variables (pydantic-settings).

``RoutingSettings()`` reads the environment and validates everything at once;
a bad or missing value raises :class:`~dbroute.errors.ConfigurationError`
naming the variable and the rule, never the value (URLs carry passwords).
"""

from __future__ import annotations

import difflib
import os
import sys
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError
from sqlalchemy.engine import URL, make_url

from dbroute.bucketing import DEFAULT_SALT
from dbroute.errors import ConfigurationError
from dbroute.phases.model import Phase, rules
from dbroute.poolers import transaction_pooler
from dbroute.target import Target

__all__ = ["ENV_PREFIX", "PoolSettings", "RoutingSettings", "normalize_url", "safe_url"]

ENV_PREFIX = "DBROUTE_"
_ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")
_DRIVER = "postgresql+psycopg"


_RECYCLE = "seconds before a connection is replaced; -1 never"


class PoolSettings(BaseModel):
    """Connection pool of one database (``DBROUTE_<DB>_POOL__<FIELD>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(5, ge=1, le=1000, description="connections kept open")
    max_overflow: int = Field(10, ge=0, le=1000, description="extra connections under load")
    timeout: float = Field(30.0, gt=0, description="seconds to wait for a free connection")
    recycle: int = Field(1800, ge=-1, description=_RECYCLE)
    pre_ping: bool = Field(True, description="test each connection on checkout")
    connect_timeout: int = Field(10, ge=1, le=600, description="seconds to establish a connection")


class NeonPoolSettings(PoolSettings):
    """Neon's pool defaults: connections recycled after five minutes.

    Neon's compute suspends when idle and its proxy drops idle connections.
    """

    recycle: int = Field(300, ge=-1, description=_RECYCLE)


def _split_keys(value: Any) -> Any:
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return value


KeySet = Annotated[frozenset[str], NoDecode]


class RoutingSettings(BaseSettings):
    """Everything dbroute needs to route sessions, read from ``DBROUTE_*``.

    Keyword arguments override the environment (handy in tests)::

        RoutingSettings(neon_url="postgresql://...", rds_url="postgresql://...", rds_percent=5)
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    neon_url: SecretStr = Field(description="URL of the Neon database (the source)")
    rds_url: SecretStr = Field(description="URL of the RDS database (the destination)")
    neon_mirror_url: SecretStr | None = Field(
        None, description="dual-write's connections into Neon (default: neon_url); not a pooler"
    )
    rds_mirror_url: SecretStr | None = Field(
        None, description="dual-write's connections into RDS (default: rds_url); not a pooler"
    )
    rds_percent: Decimal = Field(
        Decimal(0),
        ge=0,
        le=100,
        decimal_places=2,
        description="share of keys routed to RDS, 0-100 in steps of 0.01",
    )
    salt: str = Field(DEFAULT_SALT, min_length=1, description="bucketing salt (Unleash group id)")
    force_rds: KeySet = Field(frozenset(), description="comma-separated keys always on RDS")
    force_neon: KeySet = Field(frozenset(), description="comma-separated keys always on Neon")
    kill_switch: bool = Field(False, description="true: every key to Neon, whatever else is set")
    neon_pool: NeonPoolSettings = Field(default_factory=NeonPoolSettings)
    rds_pool: PoolSettings = Field(default_factory=PoolSettings)
    # Dual-write (docs/dual-write.md): writes mirrored to the other database before commit.
    dual_write: bool = Field(False, description="mirror every committed write to the other one")
    dual_write_mode: Literal["best_effort", "strict"] = Field(
        "best_effort", description="strict: a commit fails when the secondary cannot be written"
    )
    dual_write_lock_timeout_ms: int = Field(
        2000, ge=1, le=600_000, description="longest wait for a row lock on the secondary (ms)"
    )
    dual_write_statement_timeout_ms: int = Field(
        5000, ge=1, le=600_000, description="longest mirroring statement on the secondary (ms)"
    )
    dual_write_connect_timeout: int = Field(
        2, ge=1, le=60, description="seconds to connect to the secondary before journaling"
    )
    dual_write_pause_ms: int = Field(
        1000, ge=0, le=600_000, description="after a secondary failure, journal without trying (ms)"
    )
    dual_write_max_rows: int = Field(
        10_000, ge=1, description="best-effort: larger transactions are left to replay"
    )
    dual_write_notices: bool = Field(
        True,
        description="best-effort: capture triggers send row images to their writer as notices, "
        "sparing each commit a round trip (never through a transaction pooler)",
    )
    phase: Phase | None = Field(
        None, description="migration phase; implies rds_percent and dual_write (docs/runbook.md)"
    )
    phase_poll_seconds: float = Field(
        0, ge=0, le=3600, description="follow the stored phase, re-read every N seconds; 0: off"
    )
    # Shadow reads (docs/shadow-reads.md): a sample of session reads re-run on the other database.
    shadow_read_percent: Decimal = Field(
        Decimal(0), ge=0, le=100, decimal_places=2, description="share of reads shadowed, 0-100"
    )
    shadow_seed: str | None = Field(None, description="set: sampling is deterministic per query")
    shadow_workers: int = Field(2, ge=1, le=64, description="shadows run at once, in the worker")
    shadow_queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="shadows waiting; more drop"
    )
    shadow_pool_size: int = Field(
        2, ge=1, le=64, description="connections per database for shadows"
    )
    shadow_statement_timeout: float = Field(2.0, gt=0, le=600, description="seconds per shadow")
    shadow_row_cap: int = Field(10_000, ge=1, le=10_000_000, description="larger results skipped")
    shadow_recheck_delay: float = Field(0.5, ge=0, le=60, description="seconds before lag recheck")
    shadow_float_tolerance: float = Field(0.0, ge=0, le=1, description="float compare tolerance")
    shadow_include_values: bool = Field(False, description="row values in ShadowMismatch (PII)")
    shadow_python: str | None = Field(
        None, description="Python interpreter of the shadow worker process; default: this one"
    )

    def __init__(self, **values: Any) -> None:
        _reject_unknown_variables(type(self))
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc)) from None
        except SettingsError as exc:
            # pydantic-settings could not even decode a variable (bad JSON).
            raise ConfigurationError(f"invalid dbroute configuration: {exc}") from None

    @field_validator("neon_url", "rds_url", "neon_mirror_url", "rds_mirror_url", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        if value is None:
            return None
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            raise ValueError("must be a URL string")
        return SecretStr(normalize_url(raw).render_as_string(hide_password=False))

    @field_validator("shadow_python")
    @classmethod
    def _interpreter(cls, value: str | None) -> str | None:
        # uWSGI and other embedding servers make sys.executable their own binary.
        if value is not None and not (os.path.isfile(value) and os.access(value, os.X_OK)):
            raise ValueError(f"{value!r} is not an executable file (a Python interpreter)")
        return value

    @field_validator("force_rds", "force_neon", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return _split_keys(value)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingSettings:
        if self.shadow_read_percent > 0 and sys.platform == "win32":
            raise ValueError(
                "DBROUTE_SHADOW_READ_PERCENT: shadow reads need Linux or macOS (their worker "
                "process is fed through a non-blocking pipe); set it to 0 on Windows"
            )
        both = self.force_rds & self.force_neon
        if both:
            raise ValueError(
                f"keys listed in both DBROUTE_FORCE_RDS and DBROUTE_FORCE_NEON: {sorted(both)}"
            )
        neon, rds = self.url(Target.NEON), self.url(Target.RDS)
        if _identity(neon) == _identity(rds):
            raise ValueError(
                "DBROUTE_NEON_URL and DBROUTE_RDS_URL point at the same database "
                f"({safe_url(neon)}); they must be two different databases"
            )
        # A followed phase (polled, not pinned) may turn dual-write on at any time.
        if self.dual_write or (self.phase_poll_seconds > 0 and self.phase is None):
            for target in Target:
                self._check_mirror_url(target)
        return self

    def _check_mirror_url(self, target: Target) -> None:
        pooler = transaction_pooler(self.mirror_url(target))
        if pooler is None:
            return
        name = target.value.upper()
        own = self._own_mirror_url(target)
        source = f"DBROUTE_{name}_URL" if own is None else f"DBROUTE_{name}_MIRROR_URL"
        raise ValueError(
            f"{source} goes through {pooler}: dual-write's mirror connections keep "
            "session settings that switch off triggers and change capture, which such a "
            "pooler would pass on to other clients (their writes would go unmirrored); "
            f"set DBROUTE_{name}_MIRROR_URL to the database's direct endpoint"
            + (" (the same host without -pooler)" if "Neon" in pooler else "")
        )

    @model_validator(mode="before")
    @classmethod
    def _phase_defaults(cls, data: Any) -> Any:
        # A phase implies its percentage and dual-write unless they are given
        # (then _phase_consistent checks they agree).
        if not isinstance(data, dict) or data.get("phase") in (None, ""):
            return data
        try:
            phase_rules = rules(Phase(str(data["phase"]).strip().lower()))
        except ValueError:
            return data  # the field validator reports the bad phase
        implied: dict[str, Any] = {"dual_write": phase_rules.dual_write}
        if phase_rules.fixed_percent is not None:
            implied["rds_percent"] = phase_rules.fixed_percent
        return {
            **{k: v for k, v in implied.items() if k in cls.model_fields},
            **data,
        }

    @model_validator(mode="after")
    def _phase_consistent(self) -> RoutingSettings:
        if self.phase is None:
            explicit = self.model_fields_set & {"rds_percent", "dual_write"}
            if self.phase_poll_seconds > 0 and explicit:
                names = ", ".join(ENV_PREFIX + name.upper() for name in sorted(explicit))
                raise ValueError(
                    f"{names} and the phase store (DBROUTE_PHASE_POLL_SECONDS > 0) both decide "
                    "routing; unset them, or set DBROUTE_PHASE to pin a phase"
                )
            return self
        phase_rules, name = rules(self.phase), f"DBROUTE_PHASE={self.phase.value}"
        problems = []
        if phase_rules.fixed_percent is not None and self.rds_percent != phase_rules.fixed_percent:
            problems.append(
                f"{name} fixes DBROUTE_RDS_PERCENT at {phase_rules.fixed_percent}, "
                f"got {self.rds_percent} (only ramp takes a percentage)"
            )
        dual_write = self.dual_write
        if dual_write != phase_rules.dual_write:
            problems.append(
                f"{name} implies DBROUTE_DUAL_WRITE={str(phase_rules.dual_write).lower()}, "
                f"got {str(dual_write).lower()}"
            )
        if self.force_rds and not phase_rules.force_rds_allowed:
            problems.append(
                f"{name} does not mirror writes to RDS: DBROUTE_FORCE_RDS would strand those "
                "keys' writes there; advance to dual_write first"
            )
        if (self.force_neon or self.kill_switch) and not phase_rules.force_neon_allowed:
            problems.append(
                f"{name}: Neon no longer receives writes, so DBROUTE_FORCE_NEON and "
                "DBROUTE_KILL_SWITCH would route to stale data; roll back to rds_primary first"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def url(self, target: Target) -> URL:
        """The SQLAlchemy URL of ``target`` (psycopg 3 driver). Its ``str()`` masks the password."""
        secret = self.neon_url if target is Target.NEON else self.rds_url
        return make_url(secret.get_secret_value())

    def mirror_url(self, target: Target) -> URL:
        """The URL of dual-write's mirror connections into ``target`` (default: :meth:`url`)."""
        secret = self._own_mirror_url(target)
        return self.url(target) if secret is None else make_url(secret.get_secret_value())

    def _own_mirror_url(self, target: Target) -> SecretStr | None:
        return self.neon_mirror_url if target is Target.NEON else self.rds_mirror_url

    def pool(self, target: Target) -> PoolSettings:
        """The pool settings of ``target``."""
        return self.neon_pool if target is Target.NEON else self.rds_pool


def _identity(url: URL) -> tuple[object, ...]:
    # A Unix-socket URL names its server in the query (?host=/run/postgresql); host
    # names are case-insensitive, and a URL without a port means libpq's 5432.
    host = url.host.lower() if url.host else url.query.get("host")
    return (host, url.port or 5432, url.database)


def normalize_url(raw: str) -> URL:
    """Parse a PostgreSQL URL and switch it to the psycopg 3 driver.

    Accepts ``postgres://``, ``postgresql://`` and ``postgresql+psycopg://``.
    Errors never quote the URL: it may contain a password.
    """
    try:
        url = make_url(raw.strip())
    except Exception:  # SQLAlchemy's message quotes the whole URL, password included
        raise ValueError(
            "is not a valid URL; expected postgresql://user:password@host:5432/dbname"
        ) from None
    if url.drivername not in _ACCEPTED_SCHEMES:
        raise ValueError(
            f"has scheme {url.drivername!r}; expected one of "
            + ", ".join(f"{scheme}://" for scheme in _ACCEPTED_SCHEMES)
        )
    return url.set(drivername=_DRIVER)


def safe_url(url: URL | str) -> str:
    """``url`` as text with its password masked: safe for logs, spans and errors."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


#: Variables under the prefix that are not settings: the test harness's servers.
_FOREIGN_PREFIXES = (ENV_PREFIX + "TEST_",)


def _reject_unknown_variables(settings_class: type[BaseSettings]) -> None:
    """Fail on a ``DBROUTE_*`` variable no field reads: a typo must not be ignored.

    (pydantic-settings silently skips unknown environment variables.)
    """
    known = {ENV_PREFIX + name.upper() for name in settings_class.model_fields}
    # Only model fields (the pools) read DBROUTE_<FIELD>__<SUB>; under a plain field
    # pydantic-settings would skip such a variable without a word.
    nested = {
        ENV_PREFIX + name.upper()
        for name, info in settings_class.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
    }
    for variable in os.environ:
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or name.startswith(_FOREIGN_PREFIXES):
            continue
        if name in known or name.split("__", 1)[0] in nested:
            continue
        hint = difflib.get_close_matches(name, sorted(known), n=1)
        raise ConfigurationError(
            f"invalid dbroute configuration:\n  {variable}: is not a dbroute setting"
            + (f"; did you mean {hint[0]}?" if hint else f"; known: {', '.join(sorted(known))}")
        )


def _describe(exc: ValidationError) -> str:
    lines = ["invalid dbroute configuration:"]
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        fields = [str(part) for part in error["loc"] if str(part) != "__root__"]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required but not set"
        # Errors of the whole model (fields == []) name their variables themselves.
        name = ENV_PREFIX + "__".join(fields).upper() + ": " if fields else ""
        lines.append(f"  {name}{message}")
    return "\n".join(lines)
