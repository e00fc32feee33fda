"""What every demo step gets: the two servers' URLs and a console to print on."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console

__all__ = ["DemoContext"]


@dataclass
class DemoContext:
    """The demo's two databases and its output."""

    # Out of the repr: the URLs may carry passwords.
    neon_url: str = field(repr=False)
    rds_url: str = field(repr=False)
    console: Console
    users: int = 2000

    def heading(self, title: str) -> None:
        """Print a step heading."""
        self.console.rule(f"[bold]{title}")
