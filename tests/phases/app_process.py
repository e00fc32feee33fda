"""An "app process" for the poller test: a Router from the environment, printing each
routing-state change as a JSON line (with its monotonic time) until its time is up."""

from __future__ import annotations

import json
import sys
import time

from dbroute import Router


def main() -> None:
    runtime = float(sys.argv[1])
    router = Router.from_env()
    seen = None
    deadline = time.monotonic() + runtime
    try:
        while time.monotonic() < deadline:
            state = router.routing_state
            if state.phase_version != seen:
                seen = state.phase_version
                line = {
                    "version": state.phase_version,
                    "phase": state.phase.value if state.phase else None,
                    "percent": str(state.rds_percent),
                    "dual_write": state.dual_write,
                    "target": router.target_for("user-1").value,
                    "at": time.monotonic(),
                }
                print(json.dumps(line), flush=True)
            time.sleep(0.01)
    finally:
        router.dispose()


if __name__ == "__main__":
    main()
