"""Where the project's own files are: the checkout this package runs from (configs, sweep files)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
