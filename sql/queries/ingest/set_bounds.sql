-- Bounds for the streamed statements that follow on the same (Arrow driver) connection; $n parameters.
SELECT set_config('workdev.tx_low', $1, false),
       set_config('workdev.tx_high', $2, false),
       set_config('workdev.day_start', $3, false),
       set_config('workdev.day_end', $4, false),
       set_config('workdev.consumer', $5, false)
