"""Outputs as transactions: checked before the work starts, written atomically.

Every command states all its outputs and inputs up front;
:func:`check_outputs` refuses, before any frame is read, an input that is not
a regular file (missing, a directory, a device such as ``/dev/zero`` or a
FIFO, which would be read forever), an output that is also an input or
another output (whatever the spelling of the path: relative, absolute,
through a symbolic link or a hard link), an existing output without
``overwrite``, and an output that cannot be created (its directory missing,
not a directory, or not writable), so that no command fails after the work
is done.  Files are then written with
:func:`atomic_write`: to ``NAME.part`` first, renamed to ``NAME`` only once
complete, so that a run killed half way leaves no file that looks complete.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile

__all__ = ["check_inputs", "check_outputs", "check_regular_target",
           "input_files_of", "check_api_output", "atomic_write", "PART_SUFFIX"]

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


def check_inputs(inputs):
    """Refuse input paths that are not regular files.

    Parameters
    ----------
    inputs : iterable of path-like or None
        Input files; None entries are skipped.

    Raises
    ------
    FileNotFoundError
        An input does not exist.
    ValueError
        An input is a directory, a device, a FIFO or a socket.
    """
    for path in inputs:
        if path is None:
            continue
        where = os.fspath(path)
        try:
            mode = os.stat(where).st_mode
        except FileNotFoundError:
            raise FileNotFoundError(f"input file {where} does not exist.") from None
        if stat.S_ISDIR(mode):
            raise ValueError(f"input file {where} is a directory, not a file.")
        if not stat.S_ISREG(mode):
            raise ValueError(f"input file {where} is not a regular file (a device, FIFO or "
                             "socket); give a file.")


def check_regular_target(path, name="output"):
    """Refuse an output path that exists and is not a regular file.

    Outputs are only ever regular files: a directory, a device such as
    ``/dev/full``, a FIFO or a socket (also behind a symbolic link) is
    refused whatever ``overwrite`` says, since renaming a finished file
    onto it would replace the device or FIFO itself.

    Raises
    ------
    ValueError
        ``path`` exists and is not a regular file.
    """
    where = os.fspath(path)
    try:
        mode = os.stat(where).st_mode
    except OSError:
        return  # does not exist (or a dangling link): a new file
    if stat.S_ISDIR(mode):
        raise ValueError(f"{name} {where} is a directory, not a file.")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{name} {where} is not a regular file (a device, FIFO or socket); "
                         "outputs are only ever written to regular files, whatever "
                         "--overwrite (overwrite=True) says.")


def _check_writable(name, path, create_dirs):
    """Refuse an output whose directory is missing, not a directory or not writable."""
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    if create_dirs:
        # the command creates the missing directories: the nearest existing one counts
        while not os.path.lexists(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise NotADirectoryError(f"{name} {os.fspath(path)}: {parent} is not a directory.")
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{name} {os.fspath(path)}: directory {parent} does not "
                                "exist.")
    try:  # the only test that holds for root and read-only file systems alike
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise PermissionError(f"{name} {os.fspath(path)}: cannot write in directory "
                              f"{parent} ({exc.strerror}).") from None


def check_outputs(outputs, inputs=(), *, overwrite=False, create_dirs=False):
    """Refuse outputs that would destroy an input or another output, or cannot be written.

    Parameters
    ----------
    outputs : dict of str to path-like or None
        Option name (used in messages, e.g. ``"--mask-output"``) to output
        path; None entries are skipped.
    inputs : iterable of path-like
        Input files, never to be written; each must be a regular file
        (:func:`check_inputs`).
    overwrite : bool, optional
        Allow replacing existing outputs.  Default False.
    create_dirs : bool, optional
        The command creates missing directories above the outputs (a report
        or model directory).  Default False: the directory of every output
        must exist.

    Raises
    ------
    FileNotFoundError
        An input does not exist; the directory of an output does not exist.
    NotADirectoryError
        The directory of an output is a file.
    PermissionError
        No file can be created in the directory of an output.
    ValueError
        An input is not a regular file, an output is an input, or two outputs
        are the same file.
    FileExistsError
        An output exists and ``overwrite`` is False.
    """
    inputs = [p for p in inputs if p is not None]
    check_inputs(inputs)
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
        check_regular_target(path, name)
        if os.path.exists(os.fspath(path)) and not overwrite:
            raise FileExistsError(f"{name} {os.fspath(path)} exists; use --overwrite "
                                  "(overwrite=True) to replace it.")
        _check_writable(name, path, create_dirs)


def input_files_of(frames):
    """The file names behind ``frames`` of a filter function (API), as a list.

    A path, a list of paths, a `~xcrfilter.io.frames.FrameCube` or
    `~xcrfilter.io.stream.FrameStream` read from files give their files; arrays
    and other in-memory frames give ``[]``.
    """
    if isinstance(frames, (str, os.PathLike)):
        return [os.fspath(frames)]
    if isinstance(frames, (list, tuple)) and frames and all(
            isinstance(f, (str, os.PathLike)) for f in frames):
        return [os.fspath(f) for f in frames]
    names = getattr(frames, "filenames", None)
    if isinstance(names, (list, tuple)):
        return [os.fspath(f) for f in names if isinstance(f, (str, os.PathLike))]
    return []


def check_api_output(name, path, frames, *, overwrite=False):
    """What the command line checks, for one output path of a filter function.

    Refuses ``path`` when it is one of the files ``frames`` was read from
    (whatever its spelling), is not a regular file, exists without
    ``overwrite`` or cannot be created (:func:`check_outputs`).  Called
    before any work; input files that no longer exist are not checked again.
    """
    if path is None or not isinstance(path, (str, os.PathLike)):
        return
    inputs = [f for f in input_files_of(frames) if os.path.exists(f)]
    check_outputs({name: path}, inputs, overwrite=overwrite)


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
    ValueError
        ``path`` exists and is not a regular file (a directory, device, FIFO
        or socket), whatever ``overwrite`` says.
    """
    path = os.fspath(path)
    check_regular_target(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    part = path + PART_SUFFIX
    try:
        yield part
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} appeared while it was being written.")
        check_regular_target(path)
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(part)
        raise
