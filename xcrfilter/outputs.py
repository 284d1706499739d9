"""Outputs as transactions: checked before the work starts, written atomically.

Every command states all its outputs and inputs up front;
:func:`check_outputs` refuses, before any frame is read, an output that is
also an input or another output (whatever the spelling of the path:
relative, absolute, through a symbolic link or a hard link), and an existing
output without ``overwrite``.  Files are then written with
:func:`atomic_write`: to ``NAME.part`` first, renamed to ``NAME`` only once
complete, so that a run killed half way leaves no file that looks complete.
"""
from __future__ import annotations

import contextlib
import os

__all__ = ["check_outputs", "atomic_write", "PART_SUFFIX"]

#: Suffix of a file being written (renamed away when complete).
PART_SUFFIX = ".part"


def _key(path):
    """A key equal for two spellings of the same file (existing or not)."""
    real = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(real)
    except OSError:
        return ("path", os.path.normcase(real))
    return ("inode", st.st_dev, st.st_ino)


def check_outputs(outputs, inputs=(), *, overwrite=False):
    """Refuse outputs that would destroy an input or another output.

    Parameters
    ----------
    outputs : dict of str to path-like or None
        Option name (used in messages, e.g. ``"--mask-output"``) to output
        path; None entries are skipped.
    inputs : iterable of path-like
        Input files, never to be written.
    overwrite : bool, optional
        Allow replacing existing outputs.  Default False.

    Raises
    ------
    ValueError
        An output is an input, or two outputs are the same file.
    FileExistsError
        An output exists and ``overwrite`` is False.
    """
    ins = {}
    for path in inputs:
        if path is not None:
            ins.setdefault(_key(path), os.fspath(path))
    seen = {}
    for name, path in outputs.items():
        if path is None:
            continue
        key = _key(path)
        if key in ins:
            raise ValueError(f"{name} {os.fspath(path)} is also an input file "
                             f"({ins[key]}); input files are never modified.")
        if key in seen:
            raise ValueError(f"{name} {os.fspath(path)} is the same file as {seen[key][0]} "
                             f"{seen[key][1]}; every output needs its own file.")
        seen[key] = (name, os.fspath(path))
        if os.path.isdir(os.fspath(path)):
            raise ValueError(f"{name} {os.fspath(path)} is a directory, not a file.")
        if os.path.exists(os.fspath(path)) and not overwrite:
            raise FileExistsError(f"{name} {os.fspath(path)} exists; use --overwrite "
                                  "(overwrite=True) to replace it.")


@contextlib.contextmanager
def atomic_write(path, *, overwrite=False):
    """Context manager: yields ``PATH.part`` to write; renames it to ``PATH`` on success.

    On an exception the partial file is removed and ``PATH`` is left as it
    was; a process killed inside the block leaves at most ``PATH.part``,
    never a truncated ``PATH``.

    Parameters
    ----------
    path : path-like
        Final file name.
    overwrite : bool, optional
        Replace an existing ``path``.  Default False.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False (checked before and after
        writing).
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    part = path + PART_SUFFIX
    try:
        yield part
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} appeared while it was being written.")
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(part)
        raise
