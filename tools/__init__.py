"""Command-line tools: survey simulator, FITS -> TFRecord converter (run with python -m tools.X)."""

import os as _os

# TensorFlow's C++ log stays quiet in the commands (TF_CPP_MIN_LOG_LEVEL=3): on a machine without
# a GPU it reports a failed cuInit as an error on every run. Real failures still reach the user
# as Python exceptions; set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
