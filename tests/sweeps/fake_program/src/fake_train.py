"""A stand-in for src/train.py in the runner tests (a second instead of a training run): reads key=value
overrides and hydra.run.dir, waits `sleep` seconds, fails when x > fail_above, else writes config.yaml,
metrics.json (val/mAP_best, highest at x = 0.3) and env.json (the job's thread and GPU settings)."""

import json
import os
import sys
import time
from pathlib import Path

import yaml

config = yaml.safe_load((Path(__file__).parents[1] / "conf" / "fake_train.yaml").read_text())
overrides = dict(item.split("=", 1) for item in sys.argv[1:])
run_dir = Path(overrides.pop("hydra.run.dir"))
config.update({key: yaml.safe_load(value) for key, value in overrides.items()})
run_dir.mkdir(parents=True, exist_ok=True)
(run_dir / "config.yaml").write_text(yaml.safe_dump(config))
(run_dir / "env.json").write_text(
    json.dumps({name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")})
)
time.sleep(config["sleep"])
if config["x"] > config["fail_above"]:
    print(f"error: x={config['x']} is above fail_above={config['fail_above']}", file=sys.stderr)
    sys.exit(2)
(run_dir / "metrics.json").write_text(
    json.dumps({"val/mAP_best": 1 - (config["x"] - 0.3) ** 2, "seed": config["seed"]})
)
