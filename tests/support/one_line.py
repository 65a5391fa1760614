"""The one-line errors: a DataError a call raises, and a command's stderr."""

from __future__ import annotations

import pytest

from pyrovae.runtime.errors import DataError


def data_error(fn, *args, match=(), **kwargs) -> str:
    """Call fn(*args, **kwargs), expect a DataError of one line holding every word of
    ``match``; return its message."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for word in match:
        assert word in msg, (word, msg)
    return msg


def assert_one_line_error(err: str) -> str:
    """stderr is exactly one line 'pyrovae: error: ...' without a traceback."""
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("pyrovae: error: "), err
    return lines[0]
