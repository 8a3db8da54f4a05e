"""Command-line tools: survey simulator, FITS -> TFRecord converter (run with python -m tools.X)."""
