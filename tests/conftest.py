import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


def layers_events(events):
    return [e for e in events if e["type"] == "layers"]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """The store on the real SQLite file and on the real PostgreSQL on 127.0.0.1 (a schema of its own)."""
    from deepscope.app.store import Store
    from devtools.backends import drop_schema, pg_schema_url

    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'deepscope.db'}")
        yield s
        s.close()
        return
    schema, url = pg_schema_url()
    s = Store(url)
    yield s
    s.close()
    drop_schema(schema)


@pytest.fixture
def run_engine(tmp_path):
    """Train a config in this process and return (result, events)."""
    from deepscope.engine import train

    def run(config, **kwargs):
        events = []
        result = train(config, events.append, data_dir=tmp_path, **kwargs)
        return result, events

    return run
