"""Beyond the queue's bound a request is refused at once with a "busy, try again" answer, never left to time out.

An app with a queue of 2 is started in this process, and its generations are slowed down (as in
test_disconnect.py) so that the queue stays full while the test fires more requests than fit.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from app import gpt_tab
from tests.conftest import _free_port

MAX_QUEUE = 2
JOBS = 10
# Without this bound a refused request would wait out the client's timeout; a refusal is one HTTP round trip.
REFUSED_WITHIN_S = 2.0
# Browsers turn Gradio's 503 into this toast (the text is in Gradio's own front end, not set by the app).
BROWSER_MESSAGE = "This application is currently busy. Please try again."
GENERATE_DATA = ["tiny-gpt (embedded)", "", "the dog", 2, 1.0, 0, 1.0, 0, False, 0]  # the last: pace, 0 = no wait


def slow_app(monkeypatch, max_queue: int) -> SimpleNamespace:
    """An app whose queue holds `max_queue` waiting events; each generation first waits `delay.seconds` (a busy
    model). Close it with `.demo.close()`."""
    from app.ui import build_demo, launch_options

    delay = SimpleNamespace(seconds=1.5, starts=[])
    real_generate = gpt_tab.generate

    def slow_generate(*args, **kwargs):
        delay.starts.append(time.monotonic())
        time.sleep(delay.seconds)
        yield from real_generate(*args, **kwargs)

    monkeypatch.setattr(gpt_tab, "generate", slow_generate)
    demo = build_demo(max_queue=max_queue)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    return SimpleNamespace(url=f"http://127.0.0.1:{port}/", delay=delay, demo=demo)


@pytest.fixture
def small_queue(monkeypatch):
    """An app whose queue holds 2 waiting events, with slow generations (see slow_app). Its tests are about the
    page-wide bound, so one client's share is set above what they send (their share is tested on its own)."""
    monkeypatch.setenv("PLAYGROUND_PENDING_PER_VISITOR", str(JOBS + 1))
    app = slow_app(monkeypatch, MAX_QUEUE)
    yield app
    app.demo.close()


def test_queue_overflow_gets_a_busy_answer_at_once_and_the_server_lives_on(small_queue):
    from gradio_client import Client
    from gradio_client.utils import QueueError

    url = small_queue.url
    client = Client(url, verbose=False)
    done_at: dict[int, float] = {}
    lock = threading.Lock()

    def record(index):
        def callback(_):
            with lock:
                done_at[index] = time.monotonic()
        return callback

    start = time.monotonic()
    jobs = []
    for i in range(JOBS):
        job = client.submit(prompt="the dog", max_new_tokens=20, api_name="/gpt_generate")
        job.add_done_callback(record(i))
        jobs.append(job)

    finished, refused = [], []
    for i, job in enumerate(jobs):
        try:  # any other exception, a timeout included, fails the test
            finished.append(job.result(timeout=60))
        except QueueError as error:
            refused.append((i, str(error)))
    # At most the running generations and MAX_QUEUE waiting ones are admitted; the rest are refused.
    assert len(refused) >= JOBS - (2 + MAX_QUEUE), (len(finished), len(refused))
    assert finished, "no generation was admitted"
    for i, message in refused:
        assert "Please try again" in message, message
        assert done_at[i] - start < REFUSED_WITHIN_S, f"job {i} was refused only after {done_at[i] - start:.1f} s"
    for outputs in finished:
        text, _, status, _, download, *_ = outputs
        assert text.startswith("the dog") and download, status  # the whole generation, with its JSON file
    # The server still answers, generations included.
    assert client.predict(prompt="the cat", max_new_tokens=3, api_name="/gpt_generate")[0].startswith("the cat")


def test_every_model_endpoint_runs_in_one_of_the_small_groups(client):
    """On two cores 25 views at 2 each would run 50 at once; a new endpoint must join a group too: views two at
    a time, streamed generations one at a time, the Learn tab's trainers one at a time in a group of their own."""
    from app.components import LEARN, STREAMS, VIEWS
    from app.ui import build_demo
    from bench.app_bench import TRAINERS

    # No model runs in these: they redraw a step from the history, clear it, export it, or fill in an example.
    light = {"gpt_step_view", "gpt_step_reset", "gpt_step_export", "t5_step_view", "t5_step_reset",
             "t5_step_export", "t5_task", "align_examples"}
    named = {name.lstrip("/") for name in client.view_api(return_format="dict", print_info=False)["named_endpoints"]}
    groups = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in build_demo().fns.values()
              if fn.api_name in named}
    streams = (STREAMS["concurrency_id"], STREAMS["concurrency_limit"])
    learn = (LEARN["concurrency_id"], LEARN["concurrency_limit"])
    assert streams == ("streams", 1) and learn == ("learn", 1)
    generations = {"gpt_generate", "t5_generate", "align_generate"}
    trainers = {name for name in named if name.startswith("learn_") and not name.endswith("_replay")}  # replays: views
    assert generations <= named and trainers == TRAINERS, (named, trainers)
    assert {groups[name] for name in generations} == {streams}
    assert {groups[name] for name in trainers} == {learn}
    # A replay draws saved snapshots, a view; Pythia's loads one checkpoint after another (downloads, online): a
    # long run, one at a time with the trainers.
    long_replays = {"learn_pythia_replay"}
    assert long_replays <= named and {groups[name] for name in long_replays} == {learn}
    views = (VIEWS["concurrency_id"], VIEWS["concurrency_limit"])
    outside = sorted(name for name in named - light - generations - trainers - long_replays if groups[name] != views)
    assert not outside, f"model endpoints outside the views group: {outside}"
    assert VIEWS["concurrency_limit"] <= 2  # two cores


def test_generations_run_one_at_a_time_while_short_views_answer(small_queue):
    """On two cores a stream may hold one core; the other stays free for the short views."""
    from gradio_client import Client

    small_queue.delay.seconds = 3.0
    client = Client(small_queue.url, verbose=False)
    generations = [client.submit(max_new_tokens=5, api_name="/gpt_generate") for _ in range(2)]
    while not small_queue.delay.starts:
        time.sleep(0.05)
    started = time.monotonic()
    client.predict(api_name="/gpt_surprisal")
    client.predict(api_name="/bert_tokenize")
    views_took = time.monotonic() - started
    for job in generations:
        job.result(timeout=60)
    first, second = small_queue.delay.starts
    assert second - first >= small_queue.delay.seconds, "two streamed generations ran at once"
    assert views_took < small_queue.delay.seconds, f"short views waited {views_took:.1f} s behind generations"


def test_the_page_shows_busy_when_the_queue_is_full(small_queue, browser):
    small_queue.delay.seconds = 6.0  # once full, the queue stays full for seconds: time enough to click
    page = browser.new_page()
    try:
        page.goto(small_queue.url)
        page.wait_for_selector("text=Transformer Playground", timeout=30_000)
        page.get_by_role("tab", name=gpt_tab.TITLE, exact=True).click()
        button = page.locator("#gpt-generate-btn")
        button.wait_for(timeout=30_000)
        # Fill the queue through the plain HTTP route, which says at once whether an event was admitted.
        with httpx.Client(base_url=small_queue.url, timeout=10) as http:
            for _ in range(2 + MAX_QUEUE + 1):
                response = http.post("/gradio_api/call/gpt_generate", json={"data": GENERATE_DATA})
                if response.status_code != 200:
                    break
        assert response.status_code == 503, response.text
        assert "Queue is full" in response.json()["detail"]
        button.click()
        toast = page.locator('[data-testid="toast-body"]').first
        toast.wait_for(timeout=4_000)
        assert BROWSER_MESSAGE.rstrip(".") in toast.inner_text()
    finally:
        page.close()


def test_one_visitor_cannot_fill_the_queue_and_is_told_why(monkeypatch):
    """A client keeping many generations pending gets its share (3 here) and a clear refusal beyond it; the
    queue (6) keeps room, so another visitor's view is admitted and answers meanwhile. Without the share the
    hog would hold 1 running + 6 waiting events and the other visitor would be refused as "busy"."""
    from gradio_client import Client

    from app.fair_queue import REFUSED_STATUS

    share, jobs = 3, 12
    monkeypatch.setenv("PLAYGROUND_PENDING_PER_VISITOR", str(share))
    app = slow_app(monkeypatch, max_queue=6)
    try:
        hog = Client(app.url, verbose=False)
        submitted = [hog.submit(prompt="the dog", max_new_tokens=5, api_name="/gpt_generate") for _ in range(jobs)]
        refused = []
        for job in submitted:
            try:
                job.result(timeout=1)
            except httpx.HTTPStatusError as error:
                refused.append(error.response)
            except TimeoutError:  # admitted: still waiting or running
                pass
        assert len(refused) == jobs - share, len(refused)
        for response in refused:
            assert response.status_code == REFUSED_STATUS
            assert "You already have 3 requests waiting or running" in response.json()["detail"]

        other = Client(app.url, verbose=False)
        table = other.predict(api_name="/bert_tokenize")[0]
        assert table["data"], table
        assert not all(job.done() for job in submitted), "the hog's generations ended before the other visitor's turn"
        admitted = [job.result(timeout=60) for job in submitted if not job.done() or job.exception() is None]
        assert len(admitted) == share and all(text.startswith("the dog") for text, *_ in admitted)

        # Plain HTTP calls name no session: they share the address's allowance.
        with httpx.Client(base_url=app.url, timeout=10) as http:
            codes = [http.post("/gradio_api/call/gpt_generate", json={"data": GENERATE_DATA}).status_code
                     for _ in range(share + 2)]
        assert codes == [200] * share + [REFUSED_STATUS] * 2, codes
    finally:
        app.demo.close()


def test_no_event_skips_the_queue(app_url):
    """Gradio's direct route would run an event outside the queue, its groups and its per-visitor share."""
    with httpx.Client(base_url=app_url, timeout=30) as http:
        response = http.post("/gradio_api/run/bert_tokenize", json={"data": ["tiny-bert (embedded)", "", "a", ""]})
    assert response.status_code == 404 and "join the queue" in response.json()["detail"], response.text
