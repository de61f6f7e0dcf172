"""One training run per visitor: a second Learn run, waiting or running, is refused at once with a clear message.

Training runs share one slot (`app.components.LEARN`) and last up to a minute, so one visitor queuing eight kept
every other visitor's run waiting eight minutes. The runs are slowed down here (each waits before it trains)
so that the first is still pending when the next requests arrive.
"""

from __future__ import annotations

import time

import httpx
import pytest

from core import learn
from tests.conftest import _free_port

PRETRAIN = {"objective": "next-token", "seed": 0, "max_steps": 2}


@pytest.fixture
def slow_learning_app(monkeypatch):
    from app.ui import build_demo, launch_options

    real_run_lesson = learn.run_lesson

    def slow_run_lesson(*args, **kwargs):
        time.sleep(2.0)
        yield from real_run_lesson(*args, **kwargs)

    monkeypatch.setattr(learn, "run_lesson", slow_run_lesson)
    demo = build_demo()
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def _refusal(job) -> httpx.Response:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        job.result(timeout=10)
    return raised.value.response


def test_a_visitor_has_one_training_run_at_a_time_and_is_told_why(slow_learning_app):
    from gradio_client import Client

    from app.fair_queue import REFUSED_STATUS

    visitor = Client(slow_learning_app, verbose=False)
    first = visitor.submit(**PRETRAIN, api_name="/learn_pretrain")
    time.sleep(0.5)
    second = visitor.submit(**PRETRAIN, api_name="/learn_pretrain")
    other_lesson = visitor.submit(n_pairs=2, seed=0, max_steps=2, api_name="/learn_clip")
    for job in (second, other_lesson):
        response = _refusal(job)
        assert response.status_code == REFUSED_STATUS
        assert "You already have a training run waiting or running" in response.json()["detail"]
    # Views are not training runs: the same visitor's replay answers meanwhile.
    assert visitor.predict(0, 9, api_name="/learn_vit_replay")[3].startswith("Snapshot 1 of")
    # Another visitor's run is admitted (it waits for the slot).
    neighbour = Client(slow_learning_app, verbose=False).submit(**PRETRAIN, api_name="/learn_pretrain")
    assert "Step 2 / 2" in first.result(timeout=60)[1]
    # Once the first has ended the visitor may start the next one.
    assert "Step 2 / 2" in visitor.predict(**PRETRAIN, api_name="/learn_pretrain")[1]
    assert "Step 2 / 2" in neighbour.result(timeout=60)[1]


def test_plain_http_calls_share_their_address_one_run(slow_learning_app):
    data = {"data": ["next-token", 0, 2]}
    with httpx.Client(base_url=slow_learning_app, timeout=10) as http:
        codes = [http.post("/gradio_api/call/learn_pretrain", json=data).status_code for _ in range(3)]
        refused = http.post("/gradio_api/call/learn_pretrain", json=data)
    assert codes == [200, 429, 429], codes
    assert "one visitor may have one at a time" in refused.json()["detail"]
