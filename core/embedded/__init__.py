"""Data the embedded models are trained and judged on, generated deterministically by the project itself.

`grammar` is a small English-like language with long-range subject-verb agreement and a recursive-descent
parser that decides membership; `shapes` renders captioned images of coloured shapes, with a few
(colour, shape) combinations held out for zero-shot tests.
"""
