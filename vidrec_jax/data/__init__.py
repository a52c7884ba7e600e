"""Data stage: synthetic world, video files, TFDS builder and Grain pipelines."""
