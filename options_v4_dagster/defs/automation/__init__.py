"""Automation for the whole day: the session refresh after the IV collection, the daily_pipeline catch-up
schedule, the chain freshness check and its schedule, and the failed-run alerts."""
