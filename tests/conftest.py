import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


def layers_events(events):
    return [e for e in events if e["type"] == "layers"]


@pytest.fixture
def run_engine(tmp_path):
    """Train a config in this process and return (result, events)."""
    from deepscope.engine import train

    def run(config, **kwargs):
        events = []
        result = train(config, events.append, data_dir=tmp_path, **kwargs)
        return result, events

    return run
