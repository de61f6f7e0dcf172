"""The BERT tab (placeholder until it lands)."""

import gradio as gr

TITLE = "BERT"


def build() -> None:
    gr.Markdown("This tab is being built.")
