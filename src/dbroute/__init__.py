"""dbroute: move a PostgreSQL database from Neon to Amazon RDS with no downtime.

Public API::

    from dbroute import Router, RoutingSettings, Target, bucket

    router = Router.from_env()                 # DBROUTE_* environment variables
    with router.session("user-42") as session: # bound to that user's database
        ...
"""

from dbroute.bucketing import bucket
from dbroute.errors import ConfigurationError, DBRouteError, InvalidKeyError
from dbroute.router import Router, RoutingDecision
from dbroute.settings import PoolSettings, RoutingSettings
from dbroute.target import Reason, Target

__all__ = [
    "ConfigurationError",
    "DBRouteError",
    "InvalidKeyError",
    "PoolSettings",
    "Reason",
    "Router",
    "RoutingDecision",
    "RoutingSettings",
    "Target",
    "bucket",
]

__version__ = "0.1.0"
