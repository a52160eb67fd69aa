"""Data: readers per on-disk layout (Market-1501-style, MSMT17), the DataModules, cache, samplers, synthetic data."""
