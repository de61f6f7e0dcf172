"""Compact PyTorch core of Transformer Playground: models, checkpoint loading, tokenizers, generation, analysis.

The public names mirror `transformers` conventions: `load_model(source)`, `load_tokenizer(source)`,
`load_image_processor(source)` and `generate(model, input_ids, max_new_tokens, ...)`.
"""

from .checkpoint import load_model, save_model
from .generate import Seq2SeqStep, Step, generate
from .hub import CheckpointError
from .images import load_image_processor
from .tokenizer import load_tokenizer

__all__ = ["CheckpointError", "Seq2SeqStep", "Step", "generate", "load_image_processor", "load_model", "load_tokenizer",
           "save_model"]
