"""The COMPARE tab (placeholder until it lands)."""

import gradio as gr

TITLE = "Compare"


def build() -> None:
    gr.Markdown("This tab is being built.")
