"""Pre- and post-migration assessment of a database (``dbroute assess``).

:func:`~dbroute.assess.report.assess` runs the catalog queries of
:mod:`dbroute.assess.queries` on one database and compares its extensions
and settings with the other one.
"""

from __future__ import annotations

from dbroute.assess.report import Assessment, assess, render

__all__ = ["Assessment", "assess", "render"]
