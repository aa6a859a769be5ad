"""Heads on embeddings: the file format (``head``) and training on arrays.

Training, top to bottom: ``train`` (:func:`~alq.model.train.train_head`)
calls ``cv`` (the L2 strength by cross-validation) and ``fit`` (one network
fitted to convergence); ``options`` holds what they are told, ``standardize``
and ``precondition`` what they share. Nothing here reads pool or label files:
:func:`alq.train.train_on_pool` hands arrays in.
"""

from alq.model.head import Head, HeadNet, load_head

__all__ = ["Head", "HeadNet", "load_head"]
