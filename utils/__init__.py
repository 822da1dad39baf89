"""Shared helpers: image I/O, padding, checkpoints, metrics, config, distributed."""
