"""alq: large-batch active learning on precomputed embeddings."""

__version__ = "0.1.0"
