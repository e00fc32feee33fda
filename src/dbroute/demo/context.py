"""What every demo step gets: the two servers' URLs and a console to print on."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

__all__ = ["DemoContext"]


@dataclass
class DemoContext:
    """The demo's two databases and its output."""

    neon_url: str
    rds_url: str
    console: Console
    users: int = 2000

    def heading(self, title: str) -> None:
        """Print a step heading."""
        self.console.rule(f"[bold]{title}")
