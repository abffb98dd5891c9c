"""The bottom layer: records, metric registry, flags, id and topic rules, limits, settings; imports nothing of ours."""
