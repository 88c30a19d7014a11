"""Trading: orders, brokers (paper and Dhan), execution with exactly-once placement, exits.

No Dagster import. ``defs/execution`` and the CLI call into this package; ``store/trading.py``
persists what it produces.
"""
