"""Ludus's local OpenAI-compatible engine over PyTorch + transformers (Django-free).

``python -m modelhub.engine serve --models-dir DIR --host 127.0.0.1 --port 8100`` serves every model
in DIR (the zoo's manifest.json) from one process, with batched decoding on CPU or CUDA.
"""
