"""Short versions of the load, soak and hostile-load scripts: they run end to end and report their figures."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: int = 240) -> str:
    result = subprocess.run([sys.executable, "-m", *args], check=False, cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_load_test_smoke():
    out = run("tools.load_test", "--client", "gradio", "--users", "3", "--seconds", "6")
    assert "p50_s" in out and "p95_s" in out and "queue_full: 0" in out
    assert "'ok'" in out  # some requests succeeded; the exit code says none failed unhandled
    figures = dict(line.strip().split(": ", 1) for line in out.splitlines() if "cpu_ms_per_request" in line)
    # The app it started did work for its requests, and so did the clients.
    assert float(figures["server_cpu_ms_per_request"]) > 0
    assert float(figures["clients_cpu_ms_per_request"]) > 0



def plots_in(outputs: list) -> list[dict]:
    """The plotly figures among one answer's outputs (a Plot's value is {"type": "plotly", "plot": <JSON>})."""
    return [json.loads(value["plot"]) for value in outputs if isinstance(value, dict) and value.get("type") == "plotly"]


def test_load_test_http_client(tmp_path):
    """The plain-HTTP users get real answers (figures included) and count an error event as an error."""
    import httpx

    from bench.app_bench import free_port, start_app
    from tools import load_test

    port = free_port()
    process, _ = start_app(port, GRADIO_TEMP_DIR=str(tmp_path))
    url = f"http://127.0.0.1:{port}/"
    try:
        report = load_test.run(url, users=3, seconds=4, client="http", keep_outputs=True)
        with httpx.Client(base_url=url, timeout=60) as http:
            info = http.get("gradio_api/info").json()
            names = ["bert_attention", "vit_rollout", "gpt_step_export"]
            inputs = load_test.default_inputs(info, names)
            user = load_test.HttpUser(http, load_test.example_files(http, inputs))
            tally = load_test.Tally(keep_outputs=True)
            for name in names:
                load_test.timed_call(tally, name, lambda: user.call(name, inputs[name]))
            # A slider given a word: Gradio cannot preprocess it, the stream ends with an `error` event.
            parameters = [p["parameter_name"] for p in info["named_endpoints"]["/bert_attention"]["parameters"]]
            bad = list(inputs["bert_attention"])
            bad[parameters.index("layer")] = "two"
            load_test.timed_call(tally, "bert_attention", lambda: user.call("bert_attention", bad))
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert report["client"] == "http" and report["outcomes"]["ok"] > 10
    assert not [kind for kind in report["outcomes"] if kind.startswith("error")], report["examples"]
    # Every answer has a value for each output the API lists (state outputs come too, unlisted), and the figures
    # among them are plotly figures, most of them drawn (a view that waits for a click shows an empty one).
    assert len(report["outputs"]) >= 10
    for name, outputs in report["outputs"].items():
        assert len(outputs) >= len(info["named_endpoints"][f"/{name}"]["returns"]) > 0, name
    figures = [figure for outputs in report["outputs"].values() for figure in plots_in(outputs)]
    assert all(isinstance(figure["data"], list) for figure in figures)
    assert len([figure for figure in figures if figure["data"]]) >= 10
    # By hand: the attention view (text in) and the rollout view (a picture uploaded) draw a heatmap...
    assert tally.outcomes == {"ok": 2, "clear_message": 1, "error:AppError": 1}, tally.examples
    for name in ("bert_attention", "vit_rollout"):
        assert "heatmap" in [trace["type"] for trace in plots_in(tally.outputs[name])[0]["data"]], name
    # ...the export before any step is the app's own message, the unreadable slider an error.
    assert "no steps to download" in tally.examples["clear_message"]
    assert "Could not preprocess" in tally.examples["error:AppError"]
    assert len(tally.latencies) == 2


def test_burst_http_clients():
    out = run("tools.burst", "--users", "3", "--client", "http", "--endpoints", "bert_attention")
    assert out.startswith("3 http clients at once")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == {"gpt_step_reset", "bert_attention"} and "failed:" not in out
    seconds = [float(value) for value in rows["bert_attention"][2:4]]  # p50, p95: every request answered in time
    assert 0 < seconds[0] <= seconds[1] < 60

def test_soak_smoke():
    out = run("tools.soak", "--requests", "30")
    assert "RSS slope over the last" in out
    assert "upload folder MB" in out


def test_hostile_loads_smoke():
    out = run("tools.hostile_loads", "--only", "many-layers,wrong-family", "--unknown-mb", "1")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "num_layers = 200000" in rows["many-layers"]
    assert "refused x3" in rows["wrong-family"] and "tab needs a BERT or DistilBERT model" in rows["wrong-family"]
