"""One run, start to finish: the train and eval tasks behind src/train.py and src/eval.py
(`pipeline`), what every run writes (`outputs`), bad input as one line and exit code 2 (`cli`),
per-seed randomness that survives resume (`randomness`) and the Lightning callbacks that attach
LFM and log what it does (`callbacks`). Many runs at once are `lfm.jobs`, `lfm.sweeps` and `lfm.study`."""
