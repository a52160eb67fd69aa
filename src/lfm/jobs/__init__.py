"""Where and when the steps of a sweep or study run: this machine (N at once) or SLURM (submitit), with dependencies."""
