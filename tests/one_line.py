"""Shared by the data tests: the one-line DataError a call raises."""

from __future__ import annotations

import pytest

from pyrovae.errors import DataError


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
