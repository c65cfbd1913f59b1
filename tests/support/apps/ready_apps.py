"""An app whose readiness a test sets per worker: ``--app ready_apps:app``.

The process is not ready while ``$READY_DIR/down-<pid>`` exists.
"""

from __future__ import annotations

import os

import aiotcp

app = aiotcp.App(lambda message, conn: str(os.getpid()))


@app.readiness
def ready() -> bool:
    return not os.path.exists(os.path.join(os.environ["READY_DIR"], f"down-{os.getpid()}"))
