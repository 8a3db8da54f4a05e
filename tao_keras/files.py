"""Writes that a rerun trusts (reports, scores, caches): whole or not at all.

Each write goes to a temporary file beside the target, is flushed to disk, then renamed over
the target, so a kill or a full disk leaves either the old file or the new one, never a
partial one. A failed write names the file and the reason (a full disk says so).
"""

import contextlib
import errno
import json
import os


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """open() for writing whose file appears at `path` only once the block ends without error
    (the temporary file is removed otherwise). OSError names `path` and the reason."""
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with open(partial, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(partial)
        if isinstance(e, OSError) and str(path) not in str(e):
            reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise OSError(e.errno, f"could not write {path}: {reason}") from e
        raise


def write_text_atomic(path, text):
    """Write `text` to `path` atomically (see the module docstring)."""
    with atomic_open(path) as f:
        f.write(text)


def write_json_atomic(path, payload):
    """json.dump `payload` (floats of numpy kinds allowed) to `path` atomically."""
    write_text_atomic(path, json.dumps(payload, indent=1, default=float) + "\n")


def read_json(path, what):
    """A JSON file written by write_json_atomic -> its value; ValueError naming the file (and
    `what` it should be) when it is not whole JSON, FileNotFoundError when it is missing."""
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not a whole JSON file ({what}): {e}") from None
