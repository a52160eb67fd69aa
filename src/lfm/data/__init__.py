"""Re-ID data: the Market/Duke folder layout, the DataModule, samplers, a synthetic generator."""
