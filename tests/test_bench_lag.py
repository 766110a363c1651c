"""The benchmark's steady-rate verdict (bench/run.py `lag_verdict`). At a 1 s trigger the job's
lag is a sawtooth that drops at every commit; wherever its teeth fall, a lag that does not grow
is kept up and one that grows by 10% of the rate is not."""

from bench.run import lag_verdict

RATE = 10_000


def sawtooth(growth_per_s: float, phase_s: float, tooth_s: float) -> list[tuple[float, int]]:
    """A 20 s step sampled every 0.5 s: a commit every `tooth_s` brings the lag down to 1,000
    plus `growth_per_s` for each second so far; it rises by the rate in between."""
    return [(i * 0.5, round(1000 + growth_per_s * i * 0.5 + RATE * ((i * 0.5 + phase_s) % tooth_s))) for i in range(41)]


def test_a_lag_that_does_not_grow_is_kept_up_wherever_the_teeth_fall():
    for tooth_s in (0.9, 1.0, 1.1, 1.3):
        for phase_s in (0.0, 0.2, 0.45, 0.7, 0.95):
            slope, kept_up = lag_verdict(sawtooth(0, phase_s, tooth_s), RATE)
            assert kept_up, (tooth_s, phase_s, slope)


def test_a_growing_lag_is_not_kept_up():
    for tooth_s in (0.9, 1.0, 1.1, 1.3):
        for phase_s in (0.0, 0.2, 0.45, 0.7, 0.95):
            slope, kept_up = lag_verdict(sawtooth(0.1 * RATE, phase_s, tooth_s), RATE)
            assert not kept_up, (tooth_s, phase_s, slope)


def test_a_lag_over_three_seconds_of_input_at_the_end_is_not_kept_up():
    assert lag_verdict([(0.0, 0), (10.0, 4 * RATE), (20.0, 4 * RATE)], RATE)[1] is False
