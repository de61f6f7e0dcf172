"""A generation whose client goes away stops computing within 2 s, and the server keeps serving."""

from __future__ import annotations

import json
import threading
import time

import httpx

import app.gpt_tab as gpt_tab


def test_generation_stops_when_the_client_disconnects(app_url, monkeypatch, client):
    steps: list[float] = []
    real_generate = gpt_tab.generate

    def counting_generate(*args, **kwargs):
        for step in real_generate(*args, **kwargs):
            steps.append(time.monotonic())
            time.sleep(0.05)  # a slow model: the stream must outlive the client
            yield step

    monkeypatch.setattr(gpt_tab, "generate", counting_generate)
    with httpx.Client(base_url=app_url, timeout=30) as http:
        event_id = http.post("/gradio_api/call/gpt_generate",
                             json={"data": ["tiny-gpt (embedded)", "", "the dog", 200, 1.0, 0, 1.0, 0, False, 0]}
                             ).json()["event_id"]
        with http.stream("GET", f"/gradio_api/call/gpt_generate/{event_id}") as stream:
            events = 0
            for line in stream.iter_lines():
                if line.startswith("data:") and line != "data: null":
                    events += 1
                if events >= 3:
                    break  # leaving the with-block closes the connection: the client has gone
    left = time.monotonic()
    deadline = left + 6
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if steps and time.monotonic() - steps[-1] > 1.0:
            break
    print(f"{len(steps)} steps; last step {steps[-1] - left:+.2f} s after the client left")
    assert steps, "nothing was generated"
    assert steps[-1] - left < 2.0, f"kept generating {steps[-1] - left:.1f} s after the client left"
    assert len(steps) < 150
    # The server still answers.
    assert client.predict(api_name="/gpt_surprisal") is not None
