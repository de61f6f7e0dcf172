"""Nothing outside the app's assets and Gradio's own cache can be read through the file routes."""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlparse

import pytest

ATTEMPTS = [
    "/gradio_api/file=/etc/passwd",
    "/file=/etc/passwd",
    "/gradio_api/file=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/gradio_api/file=%2Fetc%2Fpasswd",
    "/gradio_api/file=/tmp/gradio/../../etc/passwd",
    "/gradio_api/file=/proc/self/environ",
    "/gradio_api/file=app.py",
    "/gradio_api/file=../app.py",
    "/static/../../../../etc/passwd",
    "/assets/..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/gradio_api/file=C:\\Windows\\win.ini",
]


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """Send the path exactly as written (no client-side normalisation of `..`)."""
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


@pytest.mark.parametrize("path", ATTEMPTS)
def test_traversal_is_refused(app_url, path):
    status, body = raw_get(app_url, path)
    assert status in (400, 403, 404, 405), (status, body[:200])
    assert b"root:" not in body and b"HF_HUB" not in body and b"import" not in body


def call_raw(url: str, api_name: str, data: list) -> str:
    """One call through Gradio's HTTP API with the payload exactly as given; the event stream as text."""
    import json
    import urllib.request

    base = url.rstrip("/") + f"/gradio_api/call/{api_name}"
    request = urllib.request.Request(base, data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{base}/{event}", timeout=60) as response:
        return response.read().decode()


def file_payload_paths() -> list[str]:
    import os
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    cache = os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")
    return ["/etc/passwd", "/proc/self/environ", str(repo / "app.py"), f"{cache}/../../etc/passwd",
            "../../../../etc/passwd", "file:///etc/passwd"]


@pytest.mark.parametrize("path", file_payload_paths())
def test_absolute_and_relative_paths_in_file_payloads_are_refused(app_url, client, path):
    """A file payload that names a file on the server instead of an upload gets an error event, never the file:
    for every endpoint that takes a picture, as listed in the app's API description."""
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    takes_picture = {name: info["parameters"] for name, info in named.items()
                     if any(p["component"] == "Image" for p in info["parameters"])}
    assert len(takes_picture) >= 5  # the ViT and CLIP views
    for name, parameters in takes_picture.items():
        data = [{"path": path, "meta": {"_type": "gradio.FileData"}} if p["component"] == "Image"
                else p.get("parameter_default") for p in parameters]
        stream = call_raw(app_url, name.lstrip("/"), data)
        assert stream.startswith("event: error"), (name, stream[:300])
        assert "root:" not in stream and "HF_HUB" not in stream and "import" not in stream


def test_server_alive_after_attempts(app_url):
    status, body = raw_get(app_url, "/")
    assert status == 200 and b"<html" in body.lower()


def test_markup_typed_into_inputs_is_shown_as_text_not_executed(page, app_url):
    """Markup in text reaches labels, plots, tables and messages as text; its handlers never run."""
    payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(app_url)
    page.get_by_role("tab", name="BERT").first.click()
    box = page.locator("#bert-view-tokens textarea").first
    box.fill(payload)
    page.click("#bert-tokenize")
    page.locator("#bert-view-tokens .js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    assert page.locator("#bert-view-tokens img[src='x']").count() == 0
    # The input keeps the markup as typed, and its pieces were drawn as text in the plot.
    assert box.input_value() == payload
    assert page.locator("#bert-view-tokens .js-plotly-plot text").count() > 10
    assert page.outside_requests == []
