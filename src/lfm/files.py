"""Files the package writes for others to read while it runs (JSON, written atomically), and the flat form
of a config (dotted keys) that its logs and tables use."""

import json
from pathlib import Path


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (a temporary file renamed into place)."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested dicts -> {'a.b.c': leaf}, e.g. a config's `model.lfm.p`; an empty dict or None stays a leaf."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
