"""Nothing outside the app's assets and Gradio's own cache can be read through the file routes."""

from __future__ import annotations

import http.client
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
