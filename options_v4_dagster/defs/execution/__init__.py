"""Trade execution: the ``execute_allocation`` job, the sensor that launches it for each pending
approval, the run-failure sensor that records failed executions, and the broker resource."""
