"""FITS survey data (catalog layout or TAO release layout) -> sharded TFRecords."""
