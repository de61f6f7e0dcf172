"""The COMPARE tab (placeholder until it lands)."""

import gradio as gr

TITLE = "COMPARE"


def build() -> None:
    gr.Markdown("This tab is being built.")
