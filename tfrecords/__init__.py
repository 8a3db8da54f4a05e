"""The on-disk record format of tao-keras: one schema, one writer, one parser."""
