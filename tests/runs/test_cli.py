"""Turning bad input into one line."""

from lfm.errors import InputError
from lfm.runs.cli import one_line


def test_one_line_keeps_our_message():
    assert one_line(InputError("data.root=/x does not exist")) == "data.root=/x does not exist"


def test_one_line_unwraps_an_error_raised_in_a_dataloader_worker():
    wrapped = InputError(
        "Caught InputError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\nlfm.errors.InputError: cannot read image /d/q.jpg; replace or delete the file\n'
    )
    assert one_line(wrapped) == "cannot read image /d/q.jpg; replace or delete the file"
