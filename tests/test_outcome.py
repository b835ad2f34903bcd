"""A run's outcome counted against its plan: what the summary line says and the exit status."""

from __future__ import annotations

from autometa.launch.outcome import count_outcome, error_line


def test_a_complete_run_exits_zero():
    outcome = count_outcome(["TERMINATED"] * 8, planned=8)
    assert outcome.exit_code == 0 and outcome.line() == "Trials: 8 of 8 planned finished."


def test_trials_that_never_started_fail_the_run():
    outcome = count_outcome(["TERMINATED"], planned=6)  # Tune's restore that forgot num_samples
    assert outcome.never_started == 5 and outcome.exit_code == 1
    assert outcome.line() == "Trials: 1 of 6 planned finished; 5 never started."


def test_failed_and_unfinished_trials_fail_the_run():
    outcome = count_outcome(["TERMINATED", "ERROR", "ERROR", "PAUSED", "PENDING"], planned=5)
    assert (outcome.failed, outcome.unfinished, outcome.never_started) == (2, 2, 0)
    assert outcome.exit_code == 1 and "2 failed, 2 did not finish" in outcome.line()


def test_a_time_budget_may_end_a_run_early():
    outcome = count_outcome(["TERMINATED"] * 3, planned=10, budget_s=60)
    assert outcome.exit_code == 0
    assert outcome.line() == ("Trials: 3 of 10 planned finished; 7 not started within the time "
                              "budget of 60 s.")


def test_a_race_decides_how_many_trials_it_runs():
    assert count_outcome(["TERMINATED"] * 7, planned=None).exit_code == 0
    raced = count_outcome(["TERMINATED"] * 6 + ["ERROR"], planned=None)
    assert raced.exit_code == 1 and raced.line() == ("Trials: 6 finished (the race decides how "
                                                     "many); 1 failed.")


def test_stopped_early_and_diverged_trials_are_counted_as_finished():
    outcome = count_outcome(["TERMINATED"] * 8, planned=8, stopped_early=3, diverged=1)
    assert outcome.exit_code == 0
    assert outcome.line() == "Trials: 8 of 8 planned finished (3 stopped early, 1 diverged)."


def test_the_error_line_is_the_last_line_of_the_error_file(tmp_path):
    file = tmp_path / "error.txt"
    file.write_text("Traceback (most recent call last):\n  File x\nValueError: bad lr\n\n")
    assert error_line(str(file)) == "ValueError: bad lr"
    file.write_text("")
    assert error_line(str(file)) is None
    assert error_line(str(tmp_path / "missing.txt")) is None and error_line(None) is None
