"""Benchmarking: load generator, misbehaving clients, baseline servers, compare report.

Importable cores:

* ``aiotcp.bench.cengine.run_c_load(LoadConfig) -> LoadResult`` (sync): the compiled epoll
  engine (``native/loadgen.c``, built on first use), and ``choose_engine`` to pick it or the
  Python engine when no C compiler is present;
* ``aiotcp.bench.loadgen.run_load(LoadConfig) -> LoadResult`` (async, one process) and
  ``aiotcp.bench.multiproc.run_load_processes(LoadConfig) -> LoadResult`` (sync, N processes):
  the Python engine;
* ``aiotcp.bench.native.build("server")``: the C epoll line server (compare's ``c-epoll``);
* ``aiotcp.bench.misbehave.run_misbehave(mode, LoadConfig) -> MisbehaveResult`` (async);
* ``aiotcp.bench.compare.run_compare(CompareOptions) -> list[dict]`` (sync).

Nothing here is imported by the server's hot path; optional libraries are imported lazily.
"""
