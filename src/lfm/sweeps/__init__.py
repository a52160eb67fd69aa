"""Offline runner of W&B sweep files (conf/sweep/): validate, propose runs, run them, resume, tabulate."""
