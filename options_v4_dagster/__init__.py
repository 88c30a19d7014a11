"""Options V4 on Dagster: NSE F&O options research and trading.

Layers (imports point down only): ``defs/`` (Dagster) -> domain packages (``quant``,
``strategies``, ``allocation``, ``trading``) -> adapters (``market``, ``store``).
"""

__version__ = "0.1.0"
