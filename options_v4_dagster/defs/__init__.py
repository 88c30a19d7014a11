"""Dagster definitions by area (loaded by ``options_v4_dagster.definitions``). Thin: read the
context, call the domain packages, persist through the warehouse, return metadata."""
