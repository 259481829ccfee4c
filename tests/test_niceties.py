"""optional_step: a step a finished run can do without fails as a warning naming it, never as an error."""

import logging

import pytest

from hf_layer_tokclf.base.niceties import optional_step


def test_an_error_becomes_a_warning_naming_the_step_and_the_error(logs):
    figure = None
    with optional_step("the model card's compute estimate"):
        figure = 1 / 0
    assert figure is None  # the fallback set before the block stays
    assert logs.getvalue().strip() == ("Skipped the model card's compute estimate: ZeroDivisionError: division by zero")


def test_a_step_that_succeeds_runs_as_usual(logs):
    with optional_step("the model card"):
        figure = 42
    assert figure == 42 and logs.getvalue() == ""


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_still_stops_the_program(stop, logs):
    with pytest.raises(stop), optional_step("the model card"):
        raise stop()
    assert logs.getvalue() == ""


def test_the_traceback_is_logged_at_debug_level(caplog):
    with caplog.at_level(logging.DEBUG, logger="hf_layer_tokclf"), optional_step("printing the scores"):
        raise BrokenPipeError(32, "Broken pipe")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info[0] is BrokenPipeError
