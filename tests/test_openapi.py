"""schemathesis over the app's own OpenAPI schema: no 5xx and no status the schema does not list."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as sc

from deepscope.app.main import create_app
from deepscope.app.settings import Settings
from devtools.null_executor import NullExecutor


def make_schema(tmp_path):
    # "testserver" is the name the ASGI test client sends as its host
    app = create_app(Settings(data_dir=tmp_path, max_queued=10**6, allowed_hosts=["testserver"]), executor=NullExecutor())
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_answers_only_documented_statuses_and_never_5xx(tmp_path):
    schema = make_schema(tmp_path)
    failures, calls = [], []
    from fastapi.testclient import TestClient

    with TestClient(schema.app):  # runs the lifespan: store, hub, executor
        for op in schema.get_all_operations():
            operation = op.ok()

            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy())
            def check(case):
                response = case.call()
                calls.append(response.status_code)
                try:
                    case.validate_response(response, checks=[sc.not_a_server_error, sc.status_code_conformance])
                except Exception as exc:  # collect every operation's failure, then report them together
                    failures.append(f"{case.method} {case.path}: {exc}")
                    raise

            try:
                check()
            except Exception:
                pass
    assert not failures, "\n".join(failures[:5])
    assert len(calls) > 100 and {201, 404, 422} <= set(calls), sorted(set(calls))


def test_a_generated_client_gets_clean_method_names_grouped_by_tag(tmp_path):
    """openapi-python-client names a method after the operation id and groups it by tag: submit_run under
    runs, not submit_run_api_runs_post under default."""
    import json
    import shutil
    import subprocess

    app = create_app(Settings(data_dir=tmp_path))
    spec = app.openapi()
    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert all(op.get("tags") for op in operations)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "client"
    generator = shutil.which("openapi-python-client")
    assert generator, "openapi-python-client is installed by the test extras"
    subprocess.run([generator, "generate", "--path", str(tmp_path / "spec.json"), "--output-path", str(out),
                    "--meta", "none"], check=True, capture_output=True)
    methods = {f"{p.parent.name}.{p.stem}" for p in (out / "api").glob("*/*.py") if p.stem != "__init__"}
    assert {"runs.submit_run", "runs.list_runs", "runs.get_run", "runs.get_events", "runs.cancel_run",
            "runs.delete_run", "runs.get_script", "lessons.start_preset", "lessons.preset_outcome",
            "instructor.instructor_runs", "config.get_options", "service.healthz"} <= methods
    assert not [m for m in methods if "_api_" in m or m.startswith("default.")], methods
