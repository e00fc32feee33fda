"""A writer process for the crash test: commits through a dual-writing session forever.

Usage: python crash_writer.py NEON_URL RDS_URL [N]; prints each committed key. With N,
the process SIGKILLs itself at its Nth primary COMMIT: after the rows reached the
secondary, before the primary committed (the protocol's narrowest window).
"""

import os
import signal
import sys

from sqlalchemy import event, text

from dbroute import Router, RoutingSettings, Target

router = Router(RoutingSettings(neon_url=sys.argv[1], rds_url=sys.argv[2], dual_write=True))
if len(sys.argv) > 3:
    commits = [0]
    fatal = int(sys.argv[3])

    @event.listens_for(router.engine(Target.NEON), "commit")
    def _die(_connection: object) -> None:
        commits[0] += 1
        if commits[0] == fatal:
            os.kill(os.getpid(), signal.SIGKILL)


i = 0
while True:
    with router.session("crash") as session, session.begin():
        session.execute(text("insert into kv values (:k, 0)"), {"k": i})
        session.execute(text("update kv set v = v + 1 where k = :k"), {"k": i // 2})
    print(i, flush=True)
    i += 1
