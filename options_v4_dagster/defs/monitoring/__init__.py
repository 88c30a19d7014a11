"""Trade monitoring: the ``monitor_positions`` and ``exit_positions`` jobs and ``open_positions_sensor``
that launches them (the real-time monitor runs outside Dagster and shares the exit path)."""
