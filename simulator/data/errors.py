"""Errors about data files a user gives RecWorld (MovieLens folders, product catalogs, edge lists).

A ``DataError`` is a ``ValueError`` whose message names the file, where in it the problem
is (``file:line:``, as compilers write it, and the column), what is wrong and what to do, on
one line, e.g.::

    /data/ml/ratings.csv:3: column 'rating': 'abc' is not a number; rating must be a number from 0.5 to 5 (stars) (fix or remove that line)
"""

from __future__ import annotations

from pathlib import Path

#: how much of a bad value a message shows
SHOW_CHARS = 60


def show(value, limit: int = SHOW_CHARS) -> str:
    """A bad value for a message: its repr, cut to ``limit`` characters (cut before it is built,
    so a huge value costs nothing)."""
    if isinstance(value, (str, bytes)):
        cut = value[:limit + 1]
        text = repr(cut)
        if len(cut) > limit:
            text = repr(cut[:limit]) + "..."
        return text
    if isinstance(value, (bool, float)) or value is None:
        return repr(value)
    if isinstance(value, int):          # repr of a huge int is slow (and refused past 4300 digits)
        return repr(value) if value.bit_length() <= 100 else f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return f"a {type(value).__name__}"


class DataError(ValueError):
    """A data file that RecWorld cannot use.

    ``path``: the file (or folder); ``problem``: what is wrong; ``line``: the 1-based line
    in the file (for CSV files the header is line 1); ``column``: the CSV column or JSON
    field; ``hint``: what to do about it.
    """

    def __init__(self, path, problem: str, *, line: int | None = None, column: str | None = None,
                 hint: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.column = column
        self.hint = hint
        where = self.path + (f":{line}" if line is not None else "")
        what = f"column {column!r}: " if column is not None else ""
        super().__init__(f"{where}: {what}{problem}" + (f"; {hint}" if hint else ""))


def file_problem(path: Path, what: str) -> DataError | None:
    """Why ``path`` cannot be read as ``what`` (a folder, a device, a pipe, unreadable), or None."""
    try:
        if path.is_dir():
            return DataError(path, f"is a folder, not {what}", hint="give the path of the file itself")
        if not path.exists():
            return DataError(path, "does not exist", hint=f"give the path of {what}")
        if not path.is_file():
            return DataError(path, f"is not a regular file (a device or a pipe?), not {what}",
                             hint="give the path of a file")
    except OSError as e:
        return DataError(path, f"cannot be read ({e.strerror or e})")
    return None
