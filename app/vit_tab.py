"""The VIT tab (placeholder until it lands)."""

import gradio as gr

TITLE = "VIT"


def build() -> None:
    gr.Markdown("This tab is being built.")
