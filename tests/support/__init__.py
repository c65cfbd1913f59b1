"""Test support for aiotcp's suite, in one place.

- ``process``: ``aiotcp serve`` as a child process on 127.0.0.1, port 0, learnt from its log.
- ``inprocess``: a :class:`aiotcp.server.Server` on a chosen event loop in this process.
- ``clients``: the line-protocol clients (blocking and asyncio streams).
- ``metrics``: reading /metrics, /readyz and /healthz.
- ``fakes``: a fake transport and a fake clock for unit tests of one layer.
- ``waiting``: waiting for an event with a hang-guard deadline (never sleep and hope).
- ``certs``, ``tls``: certificates made with trustme, TLS clients.
- ``haproxy``: a real HAProxy on loopback with a generated config.
- ``netns``: test hosts in network namespaces; partitions (link down), SIGSTOP/SIGCONT.
- ``apps/``: handlers the served processes load with ``--app MODULE:NAME``.

Fixtures built on these live in ``tests/conftest.py``.
"""
