"""The GPT tab (placeholder until it lands)."""

import gradio as gr

TITLE = "GPT"


def build() -> None:
    gr.Markdown("This tab is being built.")
