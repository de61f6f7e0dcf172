"""The result cache (app/result_cache.py): bounded by bytes, keyed by the model and every input, never reused for
sampling without a seed, one computation for identical requests arriving together, and safe across threads."""

import json
import threading

import numpy as np
import pytest

from app.result_cache import ResultCache, cached_view, nbytes_of, unseeded_sampling


class Model:
    """Stands for a loaded model: the cache tells models apart by identity, not by name."""


def counting_view(calls: list):
    def view(choice, custom, text, layer=1):
        calls.append((choice, text, layer))
        return {"text": text, "layer": layer, "rows": [[0.5] * 3]}, f"{text} at layer {layer}"

    return view


def test_entries_are_dropped_least_recently_used_first_to_stay_within_the_byte_budget():
    cache = ResultCache(max_bytes=1_000)
    for key in "abc":
        cache.get_or_compute(key, lambda k=key: k * 400, size=len)
    assert cache.cached_bytes == 800 and len(cache) == 2  # "a" went when "c" came
    computed = []
    assert cache.get_or_compute("b", lambda: computed.append("b") or "new", size=len) == "b" * 400
    assert computed == []
    cache.get_or_compute("d", lambda: "d" * 400, size=len)  # "c" is now the least recently used
    assert cache.get_or_compute("c", lambda: "again", size=lambda value: 10) == "again"
    assert cache.cached_bytes <= 1_000


def test_a_value_larger_than_the_whole_budget_is_returned_but_not_kept():
    cache = ResultCache(max_bytes=100)
    assert cache.get_or_compute("big", lambda: "x" * 500, size=len) == "x" * 500
    assert len(cache) == 0 and cache.cached_bytes == 0


def test_the_size_of_a_result_counts_its_figures_text_and_arrays():
    from gradio.components.plot import PlotData

    plot = PlotData(type="plotly", plot="{" + "1" * 10_000 + "}")
    result = (plot, "a note", np.zeros((100, 100), dtype=np.float32))
    assert nbytes_of(result) >= 10_000 + 40_000 + len("a note")


def test_identical_inputs_compute_once_and_different_inputs_or_models_compute_their_own():
    calls = []
    model_a, model_b = Model(), Model()
    models = {"a": model_a, "b": model_b}
    view = cached_view(counting_view(calls), lambda args: models[args["choice"]], cache=ResultCache(10_000_000))
    first = view("a", "", "the dog", 2)
    assert view("a", "", "the dog", 2) == first
    assert view(choice="a", custom="", text="the dog", layer=2) == first  # keywords or positions: one request
    assert len(calls) == 1
    assert view("a", "", "the cat", 2)[1] == "the cat at layer 2"
    assert view("a", "", "the dog", 3)[1] == "the dog at layer 3"
    assert view("b", "", "the dog", 2) == first and len(calls) == 4  # same inputs, another model: computed again
    assert calls == [("a", "the dog", 2), ("a", "the cat", 2), ("a", "the dog", 3), ("b", "the dog", 2)]


def test_a_reloaded_model_at_the_same_name_is_never_answered_from_the_old_one():
    calls = []
    current = {"model": Model()}
    view = cached_view(counting_view(calls), lambda args: current["model"], cache=ResultCache(10_000_000))
    view("a", "", "the dog")
    current["model"] = Model()  # evicted and loaded again: a new object
    view("a", "", "the dog")
    assert len(calls) == 2


def test_a_view_of_several_models_computes_again_when_any_one_of_them_is_another():
    calls = []
    loaded = {"bert": Model(), "gpt": Model()}
    view = cached_view(counting_view(calls), lambda args: (loaded["bert"], loaded["gpt"]),
                       cache=ResultCache(10_000_000))
    view("a", "", "the dog")
    view("a", "", "the dog")
    assert len(calls) == 1
    loaded["gpt"] = Model()  # the second model reloaded, the first unchanged
    view("a", "", "the dog")
    assert len(calls) == 2


def test_a_view_whose_model_list_holds_an_unusable_input_runs_uncached():
    calls = []
    view = cached_view(counting_view(calls), lambda args: (Model(), None), cache=ResultCache(10_000_000))
    view("a", "", "the dog")
    view("a", "", "the dog")
    assert len(calls) == 2


def test_uploaded_files_are_keyed_by_their_content_not_their_name(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    calls = []

    def view(image, model_choice, custom_repo=""):
        calls.append(image)
        return open(image).read()

    picture = tmp_path / "picture.txt"
    model = Model()
    served = cached_view(view, lambda args: model, cache=ResultCache(10_000_000))
    picture.write_text("one")
    assert served(str(picture), "m") == "one"
    picture.write_text("two")
    assert served(str(picture), "m") == "two"
    assert len(calls) == 2


def test_a_path_typed_as_text_outside_the_uploads_is_keyed_as_text_and_never_read(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    elsewhere = tmp_path / "secret.txt"
    elsewhere.write_text("one")
    reads = []
    monkeypatch.setattr(type(elsewhere), "read_bytes", lambda self: reads.append(self) or b"")
    model = Model()
    served = cached_view(lambda choice, custom, text: text.upper(), lambda args: model, cache=ResultCache(10_000))
    assert served("m", "", str(elsewhere)) == str(elsewhere).upper() and reads == []


def test_sampling_without_a_seed_is_drawn_again_for_every_request_and_a_seed_makes_it_reusable():
    calls = []
    rng = np.random.default_rng()

    def sample(choice, custom, prompt, temperature, seed, greedy):
        calls.append(seed)
        generator = np.random.default_rng(seed) if seed not in (None, "") else rng
        return float(generator.random())

    model = Model()
    view = cached_view(sample, lambda args: model, cache=ResultCache(10_000_000))
    unseeded = [view("m", "", "the", 1.0, None, False) for _ in range(3)]
    assert len(calls) == 3 and len(set(unseeded)) == 3
    seeded = [view("m", "", "the", 1.0, 7, False) for _ in range(3)]
    assert len(calls) == 4 and len(set(seeded)) == 1
    view("m", "", "the", 0.0, None, False)  # temperature 0 is greedy: a function of the inputs
    view("m", "", "the", 0.0, None, False)
    assert len(calls) == 5
    assert unseeded_sampling({"seed": None, "temperature": 0.7, "greedy": False})
    assert not unseeded_sampling({"seed": None, "temperature": 0.7, "greedy": True})
    assert not unseeded_sampling({"seed": 0, "temperature": 0.7, "greedy": False})


def test_each_request_gets_its_own_copy_of_a_returned_dict_so_no_session_changes_another_ones():
    calls = []
    model = Model()
    view = cached_view(counting_view(calls), lambda args: model, cache=ResultCache(10_000_000))
    mine, _ = view("a", "", "the dog")
    mine["text"] = "changed by one session"
    mine["rows"][0][0] = -1.0
    theirs, _ = view("a", "", "the dog")
    assert theirs == {"text": "the dog", "layer": 1, "rows": [[0.5] * 3]} and len(calls) == 1


def test_a_failure_is_not_cached_and_the_next_request_computes_again():
    attempts = []
    model = Model()

    def flaky(choice, custom, text):
        attempts.append(text)
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        return "fine"

    view = cached_view(flaky, lambda args: model, cache=ResultCache(10_000_000))
    with pytest.raises(ValueError):
        view("a", "", "x")
    assert view("a", "", "x") == "fine" and len(attempts) == 2


def test_figures_are_kept_serialized_as_gradio_sends_them():
    from app.figures import heatmap

    model = Model()
    figure = heatmap(np.eye(3), ["0 a", "1 b", "2 c"], ["0 a", "1 b", "2 c"], "eye")
    view = cached_view(lambda choice, custom: (figure, "note"), lambda args: model, cache=ResultCache(10_000_000))
    plot, note = view("a", "")
    assert plot.type == "plotly" and json.loads(plot.plot) == json.loads(figure.to_json()) and note == "note"


def test_thirty_identical_requests_at_once_run_one_computation_and_all_get_its_result():
    calls = []
    started = threading.Event()
    model = Model()

    def slow(choice, custom, text):
        calls.append(text)
        started.wait(5)  # hold the first computation until every request has arrived
        return f"result for {text}"

    view = cached_view(slow, lambda args: model, cache=ResultCache(10_000_000))
    barrier = threading.Barrier(30)
    results = []

    def request():
        barrier.wait()
        results.append(view("a", "", "the dog"))

    threads = [threading.Thread(target=request) for _ in range(30)]
    for thread in threads:
        thread.start()
    threading.Timer(0.5, started.set).start()
    for thread in threads:
        thread.join(10)
    assert results == ["result for the dog"] * 30 and calls == ["the dog"]


def test_many_threads_on_many_keys_keep_the_budget_and_every_answer_matches_its_own_key():
    cache = ResultCache(max_bytes=5_000)
    wrong = []

    def worker(offset):
        for i in range(300):
            key = (offset + i) % 40
            value = cache.get_or_compute(key, lambda k=key: str(k) * 200, size=len)
            if value != str(key) * 200 or cache.cached_bytes > 5_000:
                wrong.append((key, value[:10], cache.cached_bytes))

    threads = [threading.Thread(target=worker, args=(n * 7,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert wrong == [] and cache.cached_bytes <= 5_000 and cache.hits > 0 and cache.misses > 0
