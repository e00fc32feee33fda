"""Options several commands share, declared once so they read and behave alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from dbroute.target import Target

__all__ = ["TARGET_CHOICE", "json_option", "target_option"]

F = TypeVar("F", bound=Callable[..., Any])

#: ``neon`` or ``rds``, as typed on the command line.
TARGET_CHOICE = click.Choice([t.value for t in Target])

#: ``--json``: machine-readable output, passed as ``as_json``.
json_option: Callable[[F], F] = click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output."
)


def target_option(flag: str, dest: str, help: str, *, required: bool = False) -> Callable[[F], F]:
    """An option naming one of the two databases (``--target``, ``--from``, ``--prefer``)."""
    return click.option(flag, dest, type=TARGET_CHOICE, required=required, help=help)
