"""Configuration from ``DBROUTE_*`` environment variables (pydantic-settings).

``RoutingSettings()`` reads the environment and validates everything at once;
a bad or missing value raises :class:`~dbroute.errors.ConfigurationError`
naming the variable and the rule, never the value (URLs carry passwords).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

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

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc)) from None
        except SettingsError as exc:
            # pydantic-settings could not even decode a variable (bad JSON).
            raise ConfigurationError(f"invalid dbroute configuration: {exc}") from None

    @field_validator("neon_url", "rds_url", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            raise ValueError("must be a URL string")
        return SecretStr(normalize_url(raw).render_as_string(hide_password=False))

    @field_validator("force_rds", "force_neon", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return _split_keys(value)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingSettings:
        both = self.force_rds & self.force_neon
        if both:
            raise ValueError(
                f"keys listed in both DBROUTE_FORCE_RDS and DBROUTE_FORCE_NEON: {sorted(both)}"
            )
        neon, rds = self.url(Target.NEON), self.url(Target.RDS)
        if (neon.host, neon.port, neon.database) == (rds.host, rds.port, rds.database):
            raise ValueError(
                "DBROUTE_NEON_URL and DBROUTE_RDS_URL point at the same database "
                f"({safe_url(neon)}); they must be two different databases"
            )
        return self

    def url(self, target: Target) -> URL:
        """The SQLAlchemy URL of ``target`` (psycopg 3 driver). Its ``str()`` masks the password."""
        secret = self.neon_url if target is Target.NEON else self.rds_url
        return make_url(secret.get_secret_value())

    def pool(self, target: Target) -> PoolSettings:
        """The pool settings of ``target``."""
        return self.neon_pool if target is Target.NEON else self.rds_pool


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
