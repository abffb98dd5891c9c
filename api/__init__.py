"""The FastAPI query API: /v1 resources, GeoJSON, CSV, live stream and a small map page."""
