"""The ``asyncio_protocol`` baseline on uvloop's event loop."""

from __future__ import annotations

from aiotcp.bench.baselines.asyncio_protocol import main

if __name__ == "__main__":
    main(use_uvloop=True)
