"""Local Feature Masking (LFM): train, compare, sweep and attack CNNs with LFM."""

__version__ = "0.1.0"
