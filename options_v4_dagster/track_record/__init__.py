"""The walk-forward paper track record (issue 14): replay sessions through allocation, paper execution
and the exit rules (:mod:`.replay`), then measure what the system earned (:mod:`.stats`) and how well
its probabilities were calibrated (:mod:`.calibration`); charts (:mod:`.charts`) and the report
(:mod:`.report`). No Dagster here."""
