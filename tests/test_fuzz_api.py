"""Hostile values through every named API endpoint: each answers with a result or a clear gr.Error message.

The endpoints and their parameters are read from the app's own API description, so a new endpoint is fuzzed
without editing this file. One parameter at a time is replaced; the others keep their defaults.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

HOSTILE_TEXT = ["", "   \n\t ", "x" * 200_000, "<img src=x onerror=alert(1)>", "\u202egnp.exe\u200f 😀\x00\x07"]
HOSTILE_NUMBERS = [-5, 1e9, -1e9]
UNHANDLED = "Something went wrong"  # the message of app.components.handler for an unexpected exception


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming 10 gigapixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hostile_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    files = {
        "one_pixel.png": png_bytes(Image.new("RGB", (1, 1), "red")),
        "strip_4000x3.png": png_bytes(Image.new("RGB", (4000, 3), "blue")),
        "sixteen_bit.png": png_bytes(Image.fromarray(np.full((40, 30), 60000, dtype=np.uint16))),
        "cmyk.jpg": None,
        "bomb.png": bomb_png(),
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + b"garbage" * 20,
        "empty.png": b"",
        "text.png": b"this is not an image at all\n",
    }
    paths = []
    for name, data in files.items():
        path = folder / name
        if data is None:
            Image.new("CMYK", (50, 40), (10, 200, 30, 0)).save(path, format="JPEG")
        else:
            path.write_bytes(data)
        paths.append(str(path))
    return paths


def hostile_values(parameter: dict, images: list[str]):
    from gradio_client import handle_file

    component = parameter.get("component", "")
    if component in ("Textbox", "Code"):
        return HOSTILE_TEXT
    if component in ("Slider", "Number"):
        return HOSTILE_NUMBERS
    if component in ("Dropdown", "Radio"):
        return ["no-such-choice-<b>x</b>"]
    if component == "Image":
        return [handle_file(path) for path in images] + [None]
    return []


def endpoints(client) -> dict:
    return client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def call(client, name: str, parameters: list[dict], index: int, value):
    kwargs = {}
    for i, parameter in enumerate(parameters):
        if i == index:
            kwargs[parameter["parameter_name"]] = value
    return client.predict(api_name=name, **kwargs)


def test_every_endpoint_survives_hostile_values(client, hostile_images, monkeypatch):
    from gradio_client.exceptions import AppError

    import core.learn

    # The Learn trainers run until their step cap or a minute by design; what is fuzzed here is how they take
    # hostile values, so each run may last a second (the app runs in this process).
    monkeypatch.setattr(core.learn, "MAX_SECONDS", 1.0)

    named = endpoints(client)
    assert len(named) >= 1
    outcomes = {"result": 0, "message": 0}
    failures = []
    for name, info in named.items():
        parameters = info["parameters"]
        for index, parameter in enumerate(parameters):
            for value in hostile_values(parameter, hostile_images):
                shown = value if not isinstance(value, str) else value[:30]
                try:
                    call(client, name, parameters, index, value)
                    outcomes["result"] += 1
                except AppError as error:
                    message = str(error)
                    if UNHANDLED in message or not message.strip() or message == "None":
                        failures.append(f"{name} {parameter['parameter_name']}={shown!r}: {message[:160]}")
                    outcomes["message"] += 1
                except Exception as error:  # a timeout or a broken connection: the server did not answer well
                    failures.append(f"{name} {parameter['parameter_name']}={shown!r}: {type(error).__name__} {error}"[:240])
    # The server still answers every endpoint with its defaults afterwards (a result, or a clear message such
    # as "there are no steps to download yet").
    for name in named:
        try:
            client.predict(api_name=name)
        except AppError as error:
            if UNHANDLED in str(error) or not str(error).strip():
                failures.append(f"{name} with defaults after fuzzing: {error}")
    print(outcomes)
    assert not failures, "\n".join(failures)


def test_nan_and_infinite_numbers_do_not_break_handlers():
    """Gradio's JSON cannot carry NaN, but a handler may still receive it from a Number; clamping handles it."""
    from app import inputs

    assert inputs.number(float("nan"), "x", 0, 1, 0.5) == 0.5
    assert inputs.number(math.inf, "x", 0, 2, 1) == 2
    assert inputs.integer(-1e18, "n", 1, 10, 3) == 1
