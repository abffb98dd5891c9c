"""`citysense bench`: measured throughput and latency of the ingest path and the query API.

Modules, one job each: `loadgen` (paced payload-v1 publishers in their own processes),
`servers` (the broker, database and gateway a run starts, and their CPU),
`latency` (publish-to-commit probe), `limits` (raw COPY and broker pass-through),
`naive` (one INSERT per message), `ingest_run` (the phases of `bench ingest`),
`api_run` (`bench api`) and `report` (rich table and JSON). Bounded scripts beside them, run
by hand: `series_windows_cost`, `write_path_cost` (CPU per message of each write-path stage).
"""
