"""The VIT tab (placeholder until it lands)."""

import gradio as gr

TITLE = "ViT"


def build() -> None:
    gr.Markdown("This tab is being built.")
