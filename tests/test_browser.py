"""The playground in headless Chromium (Debian's, driven by Playwright): lessons, charts, compare,
scrub, cancel, form errors, hostile run names, phone width. Screenshots go to artifacts/."""

from __future__ import annotations

import json
import pathlib

import httpx
import pytest

from deepscope.app.settings import Settings
from devtools.server import LiveServer, wait_for

pytestmark = pytest.mark.browser
ARTIFACTS = pathlib.Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHARTS = ["loss-chart", "histogram-chart", "layer-stats-chart", "compare-chart", "heatmap-chart", "signal-chart",
          "boundary-chart"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(Settings(data_dir=tmp_path_factory.mktemp("data"), workers=2)) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = []
    page.allowed_errors = []  # a test that provokes a 4xx on purpose names its status here
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    page.wait_for_selector("[name='model.activation']", state="attached")
    yield page
    context.close()
    unexpected = [e for e in errors if not any(f"status of {s}" in e for s in page.allowed_errors)]
    assert not unexpected, unexpected


def traces(page, testid):
    return page.evaluate(f"() => (document.querySelector('[data-testid={testid}]').data || []).length")


def drawn(page, testid):
    """A chart's traces once it has been on screen: the page draws only what a learner can see."""
    page.locator(f"[data-testid={testid}]").scroll_into_view_if_needed()
    page.wait_for_function(f"() => (document.querySelector('[data-testid={testid}]').data || []).length > 0",
                           timeout=10000)
    return traces(page, testid)


def tweak(page):
    """Open the form as a learner does: "Tweak the settings", then "Advanced"."""
    page.wait_for_selector("[name='model.activation']", state="attached")
    if not page.locator("#tweak").evaluate("d => d.open"):
        page.click("#tweak > summary")
    if not page.locator("details.advanced").evaluate("d => d.open"):
        page.click("details.advanced > summary")


def wait_for_text(page, selector, prefix, timeout=90000):
    """Wait until the element's text starts with ``prefix`` (a run's or a lesson's status)."""
    page.wait_for_function(f"() => document.querySelector('{selector}').textContent.startsWith('{prefix}')",
                           timeout=timeout)


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_lesson_runs_draws_every_chart_and_shows_the_outcome(page, server):
    page.select_option("[data-testid=preset-select]", "zero-init")
    explanation = page.text_content("#lesson-explanation")
    assert "symmetry" in explanation or "identical" in explanation
    page.click("[data-testid=lesson-start]")
    page.wait_for_function("() => document.querySelector('[data-testid=run-status]').textContent.startsWith('running')"
                           " || document.querySelector('[data-testid=run-status]').textContent.startsWith('completed')",
                           timeout=30000)
    # The checks appear once the runs have ended (before that they would give the answer away).
    page.wait_for_function("() => { const b = [...document.querySelectorAll('#lesson-outcome .badge')];"
                           " return b.length > 0 && b.every(x => x.textContent === 'held' || x.textContent === 'did not hold'); }",
                           timeout=90000)
    badges = page.locator("#lesson-outcome .badge").all_inner_texts()
    assert badges and all(b == "held" for b in badges), page.inner_text("#lesson-outcome")
    for chart in CHARTS:
        assert drawn(page, chart) > 0, chart
    # Every run of the group is overlaid: one validation-accuracy line per run (and a training one beside it).
    lesson = next(p for p in httpx.get(server.url + "/api/presets").json() if p["id"] == "zero-init")
    names = page.evaluate("() => document.querySelector('[data-testid=compare-chart]').data.map(t => t.name)")
    assert sorted(n for n in names if n.endswith(": validation")) == sorted(f"{r['label']}: validation" for r in lesson["runs"])
    assert len([n for n in names if n.endswith(": training")]) == len(lesson["runs"])
    # A panel per run where a chart shows one run at a time: the boundary of each of the three nets.
    assert page.evaluate("() => document.querySelector('[data-testid=boundary-chart]').layout.images.length") \
        == len(lesson["runs"])
    shot(page, "lesson-zero-init")


def test_step_slider_scrubs_to_step_zero(page, server):
    tweak(page)
    page.fill("[name='train.epochs']", "3")
    page.fill("[name='telemetry.max_per_second']", "0")  # every 10th step, however fast
    page.fill("[name='telemetry.budget']", "0")
    page.click("[data-testid=start]")
    wait_for_text(page, "[data-testid=run-status]", "completed", timeout=60000)
    # Live, the page got at most two captures a second; once the run ends it fetches the stored rest.
    page.wait_for_function("() => Number(document.querySelector('[data-testid=step-slider]').max) > 2", timeout=15000)
    slider = page.locator("[data-testid=step-slider]")
    assert int(slider.get_attribute("max")) > 2
    slider.fill("0")
    page.wait_for_timeout(400)
    assert page.inner_text("#step-value") == "0"
    slider.fill(slider.get_attribute("max"))
    page.wait_for_timeout(400)
    assert int(page.inner_text("#step-value")) > 0
    shot(page, "scrubbed")


def test_cancel_a_running_run(page, server):
    tweak(page)
    page.fill("[name='train.epochs']", "400")
    page.click("[data-testid=start]")
    page.wait_for_function("() => document.querySelector('[data-testid=run-status]').textContent.startsWith('running')",
                           timeout=30000)
    page.click("[data-testid=cancel]")
    page.wait_for_function("() => document.querySelector('[data-testid=run-status]').textContent.startsWith('cancelled')",
                           timeout=30000)


def test_invalid_input_shows_the_servers_message_next_to_the_field(page):
    page.allowed_errors.append(422)
    tweak(page)
    page.fill("[name='model.depth']", "500")
    page.click("[data-testid=start]")
    error = page.locator("[data-error-for='model.depth']")
    error.wait_for(state="visible")
    assert "between 1 and 100" in error.inner_text()
    page.select_option("[name='model.arch']", "cnn")
    page.fill("[name='model.depth']", "3")
    page.click("[data-testid=start]")
    page.locator("[data-error-for='model.arch']").wait_for(state="visible")
    assert "image dataset" in page.inner_text("[data-error-for='model.arch']")
    shot(page, "form-errors")


def test_fields_that_do_not_apply_are_hidden_with_the_reason(page):
    tweak(page)
    assert page.is_disabled("[name='model.init_std']") and page.is_hidden("[data-field='model.init_std']")
    note = page.inner_text("fieldset[data-section=model] .hidden-note")
    assert "init std" in note and "small_normal" in note, note
    assert page.is_disabled("[name='augment.hflip']") and page.is_hidden("[name='augment.hflip']")
    page.select_option("[name='model.init']", "small_normal")
    assert page.is_enabled("[name='model.init_std']") and page.is_visible("[name='model.init_std']")
    page.select_option("[name='data.dataset']", "shapes")
    assert page.is_enabled("[name='augment.hflip']") and page.is_visible("[name='augment.hflip']")
    # The five settings that matter come first, before "Advanced".
    first = page.eval_on_selector_all("fieldset[data-section=essentials] [data-field]", "rows => rows.map(r => r.dataset.field)")
    assert first == ["model.activation", "model.init", "model.depth", "model.batchnorm", "model.dropout"]


def test_url_hash_reproduces_the_config(page, server):
    tweak(page)
    page.select_option("[name='model.activation']", "tanh")
    page.fill("[name='model.depth']", "7")
    url = page.evaluate("() => location.href")
    assert "config=" in url and "depth" in url, url
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_selector("[name='model.activation']")
    page.wait_for_timeout(200)
    assert page.input_value("[name='model.activation']") == "tanh"
    assert page.input_value("[name='model.depth']") == "7"


def test_hostile_run_name_is_shown_as_text(page, server):
    hostile = "<img src=x onerror=alert(1)>"
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    with httpx.Client(base_url=server.url) as c:
        run = c.post("/api/runs", json={"name": hostile, "train": {"epochs": 1}}).json()
        wait_for(c, run["id"])
    page.reload()
    page.wait_for_selector("#run-rows tr")
    page.wait_for_function(f"() => document.querySelector('#run-rows').textContent.includes({json.dumps(hostile)})")
    page.locator("#run-rows tr", has_text=hostile).first.locator("button.secondary").first.click()  # chart it
    assert drawn(page, "loss-chart") > 0
    page.wait_for_timeout(500)
    assert page.locator("#run-rows img, [data-testid=loss-chart] img").count() == 0 and not dialogs
    assert hostile in page.inner_text("[data-testid=loss-chart]")  # the legend shows it as text


def test_deleted_run_shows_a_clear_message(page, server):
    with httpx.Client(base_url=server.url) as c:
        run = c.post("/api/runs", json={"name": "to be deleted", "train": {"epochs": 1}}).json()
        wait_for(c, run["id"])
    page.reload()
    row = page.locator("#run-rows tr", has_text="to be deleted").first
    row.wait_for()
    with httpx.Client(base_url=server.url) as c:
        c.delete(f"/api/runs/{run['id']}")
    row.locator("button.secondary").first.click()  # show the (now deleted) run
    page.wait_for_function("() => document.querySelector('#runs-message').textContent.includes('no longer exists')")


def test_phone_width_and_keyboard(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("[name='model.activation']", state="attached")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 400, width
    page.focus("[data-testid=preset-select]")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.tagName") in ("BUTTON", "INPUT", "SELECT")
    shot(page, "phone")
    context.close()


def test_workshop_page_asks_for_the_token_and_instructor_sees_every_owner(browser, tmp_path):
    settings = Settings(data_dir=tmp_path, workers=1, token="class-secret", instructor_token="teacher-secret")
    with LiveServer(settings) as live:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.on("dialog", lambda d: d.accept("class-secret"))
        page.goto(live.url + "/")
        tweak(page)  # options loaded: the token was taken
        page.fill("[name='train.epochs']", "1")
        page.click("[data-testid=start]")
        page.wait_for_function("() => document.querySelector('[data-testid=run-status]').textContent"
                               ".startsWith('completed')", timeout=60000)
        teacher = browser.new_context()
        instructor = teacher.new_page()
        instructor.on("dialog", lambda d: d.accept("teacher-secret"))
        instructor.goto(live.url + "/instructor")
        instructor.wait_for_selector("#rows tr")
        assert "completed" in instructor.inner_text("#rows")
        assert "1 runs from 1 clients" in instructor.inner_text("[data-testid=instructor-summary]")
        shot(instructor, "instructor")
        teacher.close()
        context.close()


def test_page_reconnects_after_a_server_restart(browser, tmp_path):
    settings = Settings(data_dir=tmp_path, workers=1)
    first = LiveServer(settings)
    port = first.port
    context = browser.new_context()
    page = context.new_page()
    with first:
        page.goto(first.url + "/")
        tweak(page)
        page.fill("[name='train.epochs']", "1")
        page.click("[data-testid=start]")
        page.wait_for_function("() => document.querySelector('[data-testid=run-status]').textContent"
                               ".startsWith('completed')", timeout=60000)
    page.wait_for_function("() => document.querySelector('#runs-message').textContent.includes('not answering')",
                           timeout=15000)
    with LiveServer(settings, port=port):
        page.wait_for_function("() => document.querySelector('#runs-message').textContent === ''", timeout=15000)
        assert "completed" in page.inner_text("#run-rows")
        tweak(page)
        page.fill("[name='train.epochs']", "1")
        page.click("[data-testid=start]")
        page.wait_for_function("() => document.querySelectorAll('#run-rows tr:not(.group-row)').length === 2", timeout=30000)
    context.close()


@pytest.mark.parametrize("path, selector", [("/docs", ".opblock"), ("/redoc", "[data-section-id]")])
def test_api_docs_work_with_no_network(browser, server, path, selector):
    # Everything but this server is unreachable, as in a workshop room without internet.
    context = browser.new_context()
    page = context.new_page()
    errors, outside = [], []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    def only_here(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.goto(server.url + path)
    page.wait_for_selector(selector, timeout=20000)
    assert page.locator(selector).count() >= 5  # the operations are listed
    assert "/api/runs" in page.content()
    shot(page, "api-docs" + path.replace("/", "-"))
    context.close()
    # ReDoc's "powered by" logo points at its CDN: the page's CSP stops it before any request leaves.
    errors = [e for e in errors if not ("logo-mini.svg" in e and "Content Security Policy" in e)]
    assert not outside and not errors, (outside, errors)


@pytest.mark.parametrize("lesson", ["small-init-depth", "dying-relu", "sigmoid-not-zero-centred"])
def test_a_lesson_opens_on_its_evidence(page, server, lesson):
    preset = next(p for p in httpx.get(server.url + "/api/presets").json() if p["id"] == lesson)
    target = preset["target"]
    page.select_option("[data-testid=preset-select]", lesson)
    page.click("[data-testid=lesson-start]")
    assert page.locator("[data-testid=lesson-start]").is_disabled() or "Done" in page.inner_text("#lesson-status")
    wait_for_text(page, "#lesson-status", "Done")
    page.wait_for_timeout(600)
    fig = page.locator("figure.target")
    assert fig.count() == 1 and fig.locator(f"[data-testid={target['chart']}]").count() == 1
    box, viewport = fig.bounding_box(), page.viewport_size
    assert box["y"] < viewport["height"] and box["y"] + box["height"] > 0  # in view
    slider = page.locator("[data-testid=step-slider]")
    expected = "0" if target["step"] == 0 else slider.get_attribute("max")
    assert slider.input_value() == expected
    if "strip" in target:
        assert page.locator("[data-testid=strip-stat]").input_value() == target["strip"]
    assert f"lesson={lesson}" in page.url  # a reload or a shared link comes back to it
    assert not page.locator("[data-testid=lesson-start]").is_disabled()
    shot(page, f"lesson-{lesson}")


def test_no_serious_accessibility_violations(page, server):
    # axe-core (through axe-playwright-python) on the page with a finished lesson drawn.
    from axe_playwright_python.sync_playwright import Axe

    page.select_option("[data-testid=preset-select]", "leaky-slope-one")
    page.click("[data-testid=lesson-start]")
    wait_for_text(page, "#lesson-status", "Done")
    page.wait_for_timeout(800)
    violations = Axe().run(page).response["violations"]
    serious = [(v["id"], v["help"], [n["target"] for n in v["nodes"][:3]]) for v in violations
               if v["impact"] in ("serious", "critical")]
    assert not serious, serious


def test_charts_have_text_summaries(page, server):
    tweak(page)
    page.fill("[name='train.epochs']", "2")
    page.click("[data-testid=start]")
    wait_for_text(page, "[data-testid=run-status]", "completed", timeout=60000)
    page.wait_for_timeout(600)
    for testid, words in (("loss-chart", "validation loss"), ("compare-chart", "Validation accuracy"),
                          ("depth-strip", "first layer"), ("signal-chart", "first hidden layer"),
                          ("layer-stats-chart", "at the first layer"), ("histogram-chart", "the first layer spans"),
                          ("heatmap-chart", "captures, steps 0 to"), ("boundary-chart", "validation accuracy")):
        summary = page.get_attribute(f"[data-testid={testid}]", "aria-describedby")
        label = page.inner_text(f"#{summary}") if summary else ""
        assert words in label and "n/a" not in label, (testid, label)


def test_a_lesson_asks_for_a_prediction_and_sets_it_beside_the_result(page, server):
    page.select_option("[data-testid=preset-select]", "leaky-slope-one")
    preset = next(p for p in httpx.get(server.url + "/api/presets").json() if p["id"] == "leaky-slope-one")
    assert page.inner_text("#predict-q") == preset["predict"]["question"]
    wrong = next(i for i in range(len(preset["predict"]["choices"])) if i != preset["predict"]["answer"])
    page.locator("#predict-choices input").nth(wrong).check()
    # A phrase of the lesson text points at its chart: focused, it outlines the chart.
    page.click("#lesson-answer > summary")  # "Show me the explanation now", after predicting
    link = page.locator("#lesson-look .chart-link").first
    link.focus()
    chart = link.get_attribute("data-chart")
    assert page.locator(f"figure.pointed [data-testid={chart}]").count() == 1
    link.blur()
    assert page.locator("figure.pointed").count() == 0
    page.click("[data-testid=lesson-start]")
    wait_for_text(page, "#lesson-status", "Done")
    page.wait_for_function("() => document.getElementById('prediction-result').textContent.length > 0")
    result = page.inner_text("[data-testid=prediction-result]")
    answer = preset["predict"]["choices"][preset["predict"]["answer"]]
    assert result.startswith(f"You predicted: {preset['predict']['choices'][wrong]}. Not quite: the answer is {answer}."), result
    record = preset["evidence"]["checks"][0]
    assert f"Held in {record['held']} of {record['of']} seeded trials." in result, result
    assert "The lesson expects" in result, result
    # The prediction lives in the URL with the lesson: a reload keeps it.
    assert f"predict={wrong}" in page.evaluate("() => location.hash")
    page.reload()
    page.wait_for_function("() => document.getElementById('prediction-result').textContent.length > 0")
    assert page.inner_text("[data-testid=prediction-result]") == result
    # Its two runs, one panel each on the boundary chart.
    assert drawn(page, "boundary-chart") > 0
    assert page.evaluate("() => document.querySelector('[data-testid=boundary-chart]').layout.images.length") == 2


def test_delete_can_be_undone_and_otherwise_happens(page, server):
    with httpx.Client(base_url=server.url) as c:
        runs = [c.post("/api/runs", json={"name": f"undo me {i}", "train": {"epochs": 1, "fresh": True}}).json()
                for i in range(2)]
        for run in runs:
            wait_for(c, run["id"])
    page.reload()
    row = page.locator("#run-rows tr", has_text="undo me 0").first
    row.wait_for()
    row.get_by_role("button", name="Delete").click()
    page.wait_for_selector("[data-testid=undo-bar]")
    assert "undo me 0" in page.inner_text("[data-testid=undo-bar]")
    assert page.locator("#run-rows tr", has_text="undo me 0").count() == 0
    page.click("[data-testid=undo]")
    page.locator("#run-rows tr", has_text="undo me 0").first.wait_for()
    page.wait_for_timeout(8500)  # past the undo window: nothing was deleted
    assert httpx.get(f"{server.url}/api/runs/{runs[0]['id']}").status_code == 200
    page.locator("#run-rows tr", has_text="undo me 1").first.get_by_role("button", name="Delete").click()
    page.wait_for_function("() => document.getElementById('undo-bar').hidden", timeout=15000)
    assert httpx.get(f"{server.url}/api/runs/{runs[1]['id']}").status_code == 404


@pytest.mark.parametrize("width, height", [(1440, 900), (1024, 768), (390, 844)])
def test_a_finished_lesson_at_three_widths(browser, server, width, height):
    # For the eye (artifacts/lesson-WIDTH.png) and for what a machine can check: nothing wider than the
    # screen, and on a phone the lesson, then its target chart, then the depth strip.
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("[name='model.activation']", state="attached")
    page.select_option("[data-testid=preset-select]", "dying-relu")
    page.click("[data-testid=lesson-start]")
    wait_for_text(page, "#lesson-status", "Done")
    page.wait_for_timeout(800)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width + 1
    if width < 800:
        tops = page.evaluate("""() => ['lesson-card', 'depth-fig'].map((id) => document.getElementById(id)
            .getBoundingClientRect().top).concat([document.querySelector('figure.target').getBoundingClientRect().top,
            document.getElementById('config-form').getBoundingClientRect().top])""")
        lesson, strip, target, form = tops
        assert lesson < form < target <= strip, tops  # the form, its settings folded, before the charts
    for testid in CHARTS:  # scrolled past, as a learner would: the page draws what is on screen
        drawn(page, testid)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    shot(page, f"lesson-{width}")
    context.close()


def test_the_time_axis_one_position_per_capture_play_and_every_chart_follows(page, server):
    """A lesson run at the defaults: the slider has one position per capture (at least 50), the heatmap one
    column per capture, Play steps the slider forward, and the loss chart, the heatmap and the boundary
    follow the shown step."""
    page.select_option("[data-testid=preset-select]", "dying-relu")
    page.click("[data-testid=lesson-start]")
    wait_for_text(page, "[data-testid=lesson-status]", "Done", timeout=90000)
    page.wait_for_function("() => Number(document.querySelector('[data-testid=step-slider]').max) >= 49", timeout=20000)
    slider = page.locator("[data-testid=step-slider]")
    positions = int(slider.get_attribute("max")) + 1
    page.locator("[data-testid=heatmap-chart]").scroll_into_view_if_needed()
    page.wait_for_function(f"() => (document.querySelector('[data-testid=heatmap-chart]').data || [])[0]?.x.length === {positions}")
    slider.fill("10")
    page.wait_for_timeout(300)
    step = int(page.inner_text("#step-value"))
    assert 0 < step < 100
    marker = "el => (el.layout.shapes || []).map(s => s.x0)"
    page.locator("[data-testid=loss-chart]").scroll_into_view_if_needed()
    page.wait_for_function(f"() => (document.querySelector('[data-testid=loss-chart]').layout.shapes || []).some(s => s.x0 === {step})")
    assert step in page.locator("[data-testid=loss-chart]").evaluate(marker)
    page.locator("[data-testid=boundary-chart]").scroll_into_view_if_needed()
    titles = "() => (document.querySelector('[data-testid=boundary-chart]').layout.shapes || []).map(s => s.label.text)"
    page.wait_for_function(f"() => {{ const t = ({titles})(); return t.length === 2"
                           f" && t.every(text => Number(text.split('step ')[1]) <= {step}); }}", timeout=5000)
    page.click("[data-testid=play]")
    assert page.get_attribute("[data-testid=play]", "aria-pressed") == "true"
    page.wait_for_function(f"() => Number(document.querySelector('#step-value').textContent) > {step}", timeout=5000)
    page.click("[data-testid=play]")  # pause
    assert page.get_attribute("[data-testid=play]", "aria-pressed") == "false"
    shot(page, "time-axis")


def test_what_deepscope_sees_names_the_problem_and_shows_its_evidence(page, server):
    """A run of one's own that cannot learn: the doctor's card names the problem at the top of the run;
    "Show me" opens its chart on its statistic; "Try" starts the suggested cure beside it."""
    tweak(page)
    page.select_option("[name='model.activation']", "relu")
    page.fill("[name='model.bias_init']", "-2")
    page.fill("[name='train.epochs']", "3")
    page.click("[data-testid=start]")
    wait_for_text(page, "[data-testid=run-status]", "completed", timeout=60000)
    page.wait_for_selector("[data-testid=findings] [data-finding=dead_units]", timeout=10000)
    card = page.inner_text("[data-testid=findings]")
    assert "What DeepScope sees" in card and "Dead units" in card
    page.locator("[data-finding=dead_units] [data-testid=finding-evidence]").click()
    page.wait_for_timeout(300)
    assert page.input_value("[data-testid=strip-stat]") == "dead_frac"
    assert page.evaluate("() => document.querySelector('[data-testid=layer-stats-chart]').closest('figure')"
                         ".classList.contains('target')")
    before = page.locator("#run-rows tr:not(.group-row)").count()
    page.locator("[data-finding=dead_units] [data-testid=finding-try]").click()
    page.wait_for_function(f"() => document.querySelectorAll('#run-rows tr:not(.group-row)').length > {before}")
    assert "leaky" in page.inner_text("#run-rows")
    shot(page, "findings")


def presets(server):
    return {p["id"]: p for p in httpx.get(server.url + "/api/presets").json()}


def test_no_spoiler_before_the_prediction(page, server):
    """Every lesson shows its question and its setup first; the explanation and the expected outcomes (which
    state the answer) stay out of sight until the run has ended or the learner asks for them."""
    for lesson_id, preset in presets(server).items():
        page.select_option("[data-testid=preset-select]", lesson_id)
        visible = page.inner_text("main")
        assert preset["predict"]["question"] in visible, lesson_id
        assert page.inner_text("[data-testid=lesson-setup]").startswith("The runs:"), lesson_id
        assert preset["explanation"] not in visible, lesson_id
        for check in preset["expect"]:
            assert check["text"] not in visible, (lesson_id, check["text"])
        assert not page.locator("[data-testid=lesson-answer]").evaluate("d => d.open"), lesson_id
    # The answer is one explicit click away.
    page.click("#lesson-answer > summary")
    assert preset["explanation"] in page.inner_text("main")


def test_every_look_at_link_names_a_view_and_sets_it(page, server):
    """Each lesson's "look at" phrases are links; a click outlines the named chart and sets its statistic,
    histogram kind and one-range switch as the link names them."""
    for lesson_id, preset in presets(server).items():
        page.select_option("[data-testid=preset-select]", lesson_id)
        page.click("#lesson-answer > summary")
        links = page.locator("#lesson-look .chart-link")
        assert links.count() == len(preset["links"]) >= 1, lesson_id
        for i, view in enumerate(preset["links"]):
            assert page.locator(f"[data-testid={view['chart']}]").count() == 1, (lesson_id, view)
            links.nth(i).click()
            page.wait_for_timeout(50)
            assert page.locator(f"figure.target [data-testid={view['chart']}]").count() == 1, (lesson_id, view)
            assert page.locator("figure.target").count() == 1, (lesson_id, view)
            if "stat" in view:
                assert page.input_value("[data-testid=strip-stat]") == view["stat"], (lesson_id, view)
            if "hist" in view:
                assert page.input_value("[data-testid=hist-kind]") == view["hist"], (lesson_id, view)
            if "shared" in view:
                assert page.is_checked("[data-testid=hist-shared]") == view["shared"], (lesson_id, view)


def test_a_link_on_a_finished_lesson_shows_its_step_and_writes_the_number_on_the_chart(page, server):
    """dying-relu: "mean slope f'(z) at the last step" puts the slider at the end, the against-depth chart on
    the slope and writes ReLU's value at linear5 on it; "play the first 100 steps" plays from step 0."""
    page.select_option("[data-testid=preset-select]", "dying-relu")
    page.click("[data-testid=lesson-start]")
    wait_for_text(page, "#lesson-status", "Done")
    page.wait_for_function("() => document.getElementById('prediction-result').textContent.length > 0", timeout=30000)
    page.wait_for_function("() => Number(document.querySelector('[data-testid=step-slider]').max) >= 49", timeout=20000)
    assert page.locator("[data-testid=lesson-answer]").evaluate("d => d.open")  # the run has spoken
    slider = page.locator("[data-testid=step-slider]")
    slider.fill("3")
    page.locator("#lesson-look .chart-link", has_text="at the last step").click()
    page.wait_for_timeout(400)
    assert slider.input_value() == slider.get_attribute("max")
    assert page.input_value("[data-testid=strip-stat]") == "slope_mean"
    notes = "() => (document.querySelector('[data-testid=layer-stats-chart]').layout.annotations || []).map(a => a.text)"
    page.wait_for_function(f"() => ({notes})().some(t => t.includes('linear5:'))", timeout=5000)
    assert any(t.startswith("relu linear5: ") for t in page.evaluate(notes)), page.evaluate(notes)
    page.locator("#lesson-look .chart-link", has_text="play the first 100 steps").click()
    assert page.get_attribute("[data-testid=play]", "aria-pressed") == "true"
    page.wait_for_function("() => document.querySelector('[data-testid=play]').getAttribute('aria-pressed') === 'false'",
                           timeout=20000)  # it stops at step 100
    assert 0 < int(page.inner_text("#step-value")) <= 100
    assert page.input_value("[data-testid=strip-stat]") == "dead_frac"
    shot(page, "link-dying-relu")


OVERLAPS = """() => {
  // Every drawn label of every chart (ticks, titles, annotations, legends, text traces), as boxes on the
  // screen; two that share more than a sliver of area print over each other.
  const found = [];
  for (const chart of document.querySelectorAll('.js-plotly-plot')) {
    const boxes = [...chart.querySelectorAll('svg text')].filter((t) => t.textContent.trim()
        && getComputedStyle(t).opacity !== '0' && getComputedStyle(t).visibility !== 'hidden')
      .map((t) => ({ text: t.textContent, r: t.getBoundingClientRect() })).filter((b) => b.r.width > 0 && b.r.height > 0);
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i].r, b = boxes[j].r;
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 2 && h > 2) found.push(`${chart.id}: "${boxes[i].text}" over "${boxes[j].text}"`);
    }
  }
  return found;
}"""


@pytest.mark.parametrize("lesson", ["zero-init", "batchnorm-test-time"])
@pytest.mark.parametrize("width, height", [(1440, 900), (390, 844)])
def test_no_chart_labels_print_over_each_other(browser, server, lesson, width, height):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("[name='model.activation']", state="attached")
    page.select_option("[data-testid=preset-select]", lesson)
    page.click("[data-testid=lesson-start]")
    wait_for_text(page, "#lesson-status", "Done")
    page.wait_for_timeout(800)
    for testid in CHARTS + ["depth-strip"]:
        drawn(page, testid)
    page.wait_for_timeout(500)
    overlaps = page.evaluate(OVERLAPS)
    shot(page, f"labels-{lesson}-{width}")
    # every run is named on the against-depth chart, even where its output layer has no value (dead units)
    page.select_option("#strip-stat", "dead_frac")
    page.wait_for_timeout(500)
    labels = page.evaluate("""() => (document.querySelector('[data-testid=layer-stats-chart]').layout.annotations
        || []).map(a => a.text)""")
    names = [r["label"] for r in presets(server)[lesson]["runs"]]
    # and on a phone, the run list's actions fit its card (no cut-off "PyTorch script")
    runs_overflow = page.evaluate("() => { const r = document.getElementById('runs'); return r.scrollWidth - r.clientWidth; }")
    context.close()
    assert not overlaps, overlaps
    assert all(any(n in text for text in labels) for n in names), (names, labels)
    assert runs_overflow <= 1, runs_overflow


def colour_of(page, testid, name):
    return page.evaluate(f"""() => (document.querySelector('[data-testid={testid}]').data || [])
        .filter(t => t.name === {json.dumps(name + ": validation")}).map(t => t.line && t.line.color)[0]""")


def test_a_run_keeps_its_colour(page, server):
    """Opened again, or compared in another order, a lesson's run is drawn in the same colour."""
    preset = presets(server)["batchnorm-test-time"]
    page.select_option("[data-testid=preset-select]", "batchnorm-test-time")
    page.click("[data-testid=lesson-start]")
    wait_for_text(page, "#lesson-status", "Done")
    drawn(page, "compare-chart")
    names = [r["label"] for r in preset["runs"]]
    before = {n: colour_of(page, "compare-chart", n) for n in names}
    assert all(before.values()) and len(set(before.values())) == len(names), before
    # Uncheck the first run in the list and check it again: it now comes last among the compared.
    run_id = page.locator("#run-rows tr:has(input:checked)", has_text=names[0]).first.get_attribute("data-run")
    box = page.locator(f"#run-rows tr[data-run='{run_id}'] input[type=checkbox]")
    box.uncheck()
    box.check()
    page.wait_for_timeout(500)
    assert {n: colour_of(page, "compare-chart", n) for n in names} == before
    # Reloaded, the lesson's runs come back in their colours.
    page.reload()
    page.wait_for_function("() => (document.querySelector('[data-testid=compare-chart]').data || []).length > 0", timeout=20000)
    page.wait_for_timeout(500)
    assert {n: colour_of(page, "compare-chart", n) for n in names} == before


def test_the_mode_bar_is_hidden_on_touch_and_shown_on_hover_with_a_mouse(browser, server):
    for touch in (True, False):
        context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=touch, is_mobile=touch)
        page = context.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("[name='model.activation']", state="attached")
        page.select_option("[data-testid=preset-select]", "dying-relu")
        page.click("[data-testid=lesson-start]")
        wait_for_text(page, "#lesson-status", "Done")
        drawn(page, "loss-chart")
        chart = page.locator("[data-testid=loss-chart]")
        if not touch:
            chart.hover()
            page.wait_for_timeout(300)
        bars = chart.locator(".modebar")
        visible = bars.count() > 0 and bars.first.evaluate("b => getComputedStyle(b).opacity !== '0'"
                                                           " && getComputedStyle(b).display !== 'none'")
        context.close()
        assert visible is (not touch), touch
