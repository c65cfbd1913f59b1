"""Benchmarking: load generator, misbehaving clients, baseline servers, compare report.

Importable cores (no subprocess needed):

* ``aiotcp.bench.loadgen.run_load(LoadConfig) -> LoadResult`` (async, one process) and
  ``aiotcp.bench.multiproc.run_load_processes(LoadConfig) -> LoadResult`` (sync, N processes);
* ``aiotcp.bench.misbehave.run_misbehave(mode, LoadConfig) -> MisbehaveResult`` (async);
* ``aiotcp.bench.compare.run_compare(CompareOptions) -> list[dict]`` (sync).

Nothing here is imported by the server's hot path; optional libraries are imported lazily.
"""
