"""Dataset preparation: real Market-1501/DeepFashion, pair lists, and the built-in synthetic data."""
