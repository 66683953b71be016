"""Where user-provided files live. The engine reads it; the app's settings default to the same."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    env = os.environ.get("DEEPSCOPE_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".deepscope"
