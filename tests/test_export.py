"""The JSON download behind every view: arrays of any layout, tensors and numpy scalars written as plain
numbers, NaN as null (JSON has no NaN), and the file readable by any JSON reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from app.export import json_file


def test_arrays_tensors_scalars_and_nan_round_trip_through_a_standard_reader():
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    data = {
        "matrix": matrix,
        "columns": matrix.T,  # not contiguous: written through its list
        "tensor": torch.tensor([[0.25, 0.5]]),
        "scalar": np.float32(0.125),
        "count": np.int64(7),
        "masked": np.array([1.0, np.nan, math.inf]),
        "by_layer": {1: "first", 2: "second"},
        "tokens": ["the", "ünïcode", "</s>"],
    }
    path = json_file(data, "a view/with odd name")
    assert Path(path).name.startswith("a-view-with-odd-name-")  # no folder of the user's making
    with open(path, encoding="utf-8") as file:
        read = json.load(file)
    assert read["matrix"] == matrix.tolist()
    assert read["columns"] == matrix.T.tolist()
    assert read["tensor"] == [[0.25, 0.5]]
    assert read["scalar"] == 0.125 and read["count"] == 7
    assert read["masked"] == [1.0, None, None]
    assert read["by_layer"] == {"1": "first", "2": "second"}
    assert read["tokens"] == ["the", "ünïcode", "</s>"]
