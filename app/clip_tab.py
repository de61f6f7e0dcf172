"""The CLIP tab (placeholder until it lands)."""

import gradio as gr

TITLE = "CLIP"


def build() -> None:
    gr.Markdown("This tab is being built.")
