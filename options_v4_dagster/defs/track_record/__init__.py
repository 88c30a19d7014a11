"""The walk-forward paper track record: the ``track_record`` asset (a replay over a configured range of
sessions, its statistics, calibration and charts; the domain is ``options_v4_dagster.track_record``)."""
