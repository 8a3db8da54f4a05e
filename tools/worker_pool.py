"""Worker processes for the tools: spawn-started (safe after TensorFlow is imported), or none.

A spawned worker re-imports the caller's main script; when that script is not a real
file (code piped through stdin, `python -c`), every worker dies at start and
multiprocessing would restart them forever. Such callers get in-process work instead.
"""

import logging
import multiprocessing
import os
import sys


def main_is_importable():
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


def spawn_pool(workers):
    """A spawn-context Pool of `workers` processes, or None to work in this process."""
    if workers <= 1:
        return None
    if not main_is_importable():
        logging.warning(
            "running in-process: worker processes cannot re-import the main script %r",
            sys.modules["__main__"].__file__,
        )
        return None
    return multiprocessing.get_context("spawn").Pool(workers)
