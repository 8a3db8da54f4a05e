"""The paper's baseline: light curves from the images (photometry), light-curve features, Random
Forest."""
