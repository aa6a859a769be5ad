"""Heads on embeddings: the file format (``head``) and training (``train``)."""

from alq.model.head import Head, HeadNet, load_head

__all__ = ["Head", "HeadNet", "load_head"]
