"""``SHA256SUMS`` of model directories: writing and hostile-input-safe checking.

Shared by the CAM (`xcrfilter.ml.model_files`) and morph (`xcrfilter.ml.morph`)
model directories.  Only known model file names may be listed, each a
regular file inside the directory (no path, no link out of it, no device
such as ``/dev/zero``), so that a hostile directory fails at once instead of
making the loader read forever.  The model checksum is the sha256 of the
``SHA256SUMS`` text, i.e. of every listed file.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["ModelFileError", "SUMS_FILE", "file_sha256", "write_checksums", "is_listed",
           "verify_checksums"]

SUMS_FILE = "SHA256SUMS"


class ModelFileError(ValueError):
    """A model file is missing, corrupt, foreign or fails its checksum."""


def file_sha256(path):
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(model_dir, files):
    """Write ``SHA256SUMS`` for those of ``files`` present; return the model checksum."""
    model_dir = Path(model_dir)
    text = "".join(f"{file_sha256(model_dir / name)}  {name}\n" for name in files
                   if (model_dir / name).exists())
    (model_dir / SUMS_FILE).write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(model_dir, kind="model"):
    """``(directory, mtime)``: the key under which a model directory is cached.

    The resolved directory and the modification time [ns] of its
    ``SHA256SUMS`` (0 if it has none; loading then fails with the reason), so
    that a model rewritten in place is loaded again.

    Raises
    ------
    ModelFileError
        ``model_dir`` is not a directory.
    """
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise ModelFileError(f"{kind} model directory {str(model_dir)!r} does not exist")
    sums = model_dir / SUMS_FILE
    return str(model_dir), (sums.stat().st_mtime_ns if sums.exists() else 0)


def verify_checksums(model_dir, files, required, kind="model"):
    """Check every file of ``SHA256SUMS``; return the model checksum.

    Parameters
    ----------
    model_dir : path-like
        Model directory.
    files : sequence of str
        The file names that may be listed.
    required : sequence of str
        The file names that must be listed.
    kind : str
        Model kind named in the messages (e.g. ``"CAM"``).

    Raises
    ------
    ModelFileError
        No, oversized or binary ``SHA256SUMS``; a listed name that is not a
        model file, or not a regular file inside ``model_dir``; a checksum
        mismatch; a required file not listed.
    """
    model_dir = Path(model_dir)
    sums = model_dir / SUMS_FILE
    if not sums.is_file():
        raise ModelFileError(f"{model_dir}: no {SUMS_FILE}; not an xcrfilter {kind} model "
                             "directory")
    if sums.stat().st_size > 64 * 1024:
        raise ModelFileError(f"{sums}: {sums.stat().st_size} bytes, too large for a list of "
                             f"{len(files)} checksums")
    try:
        text = sums.read_text()
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{sums}: not a text file ({exc})") from exc
    listed = set()
    for line in text.splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        name = name.strip()
        if name not in files:
            raise ModelFileError(f"{sums}: lists {name!r}, which is not a model file "
                                 f"({', '.join(files)})")
        path = model_dir / name
        if not path.is_file() or path.resolve().parent != model_dir.resolve():
            raise ModelFileError(f"{model_dir}: file {name!r} listed in {SUMS_FILE} is missing "
                                 "or not a regular file inside the model directory")
        if file_sha256(path) != digest:
            raise ModelFileError(f"{path}: sha256 does not match {SUMS_FILE} (corrupt or modified "
                                 "model file)")
        listed.add(name)
    missing = [n for n in required if n not in listed]
    if missing:
        raise ModelFileError(f"{sums}: must list {', '.join(missing)}")
    return hashlib.sha256(text.encode()).hexdigest()


def is_listed(model_dir, name):
    """Whether ``SHA256SUMS`` of ``model_dir`` lists the file ``name``.

    A file a directory holds but does not list (e.g. a ``.onnx`` copied in
    by hand) is never run: the loaders convert the Keras file instead.
    """
    sums = Path(model_dir) / SUMS_FILE
    return sums.is_file() and any(line.partition("  ")[2].strip() == name
                                  for line in sums.read_text().splitlines())
