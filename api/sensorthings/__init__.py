"""OGC SensorThings API 1.1 (OGC 18-088), read-only, over citysense's own tables.

One module per job: `filter_grammar` (the $filter language, parsed), `entity_model` (the
eight entity sets as SQL over devices, readings and calibrations), `filter_sql` (a parsed
expression compiled to parameterised SQL), `query_options` ($top, $skip, $count, $orderby,
$select, $expand), `resource_path` (the URL path), `query_runner` (the SQL of one request)
and `serialise` (rows to entities with their links).
"""
