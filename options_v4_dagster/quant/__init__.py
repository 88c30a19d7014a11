"""Pure quantitative code (pricing, implied vol, greeks, indicators): numpy only, no Dagster."""
