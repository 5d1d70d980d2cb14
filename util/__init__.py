"""Shared utilities: atomic file I/O, images, checkpoints, distributed helpers, visualizer."""
