"""README's API example runs as written against the app (only the address differs)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_api_example_runs(app_url, monkeypatch):
    text = README.read_text()
    section = text[text.index("## API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace("http://127.0.0.1:7860/", app_url)
    monkeypatch.chdir(README.parent)
    printed = []
    exec(compile(code, "README.md", "exec"), {"print": lambda *a, **k: printed.append(a)})
    assert printed, "the streamed generation printed nothing"


def test_readme_names_every_endpoint(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    text = README.read_text()
    missing = [name for name in named if f"`{name}`" not in text]
    assert not missing, missing
