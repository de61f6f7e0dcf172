"""Gradio UI of Transformer Playground: one module per tab, assembled in `app.ui`."""
