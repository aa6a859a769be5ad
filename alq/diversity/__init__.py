"""Kernels of the diversity and cold-start strategies, one concept per module.

- ``rows``: :class:`RowTable`, the per-row vectors a kernel works on (a
  subset of pool rows, optionally mapped through the head), cached on the
  device when they fit ``ALQ_WORKING_MEMORY``, else streamed.
- ``metric``: squared distances in embedding space and in BADGE's gradient
  space (factorised, never materialising the gradient embedding).
- ``nearest``: one nearest-centre distance per row, updated per new centre
  with exact triangle-inequality pruning.
- ``kcenter``: k-center greedy (Sener & Savarese 2018; Gonzalez 1985).
- ``kmeanspp``: k-means++ seeding by D^2 sampling (Arthur & Vassilvitskii
  2007), as BADGE uses it (Ash et al. 2020).
- ``facility``: lazy-greedy facility location on a dense or kNN similarity.
- ``knn``: faiss k-nearest-neighbour graphs and k-means (GPU when present).
- ``partition``: random paired partitions and an exact budget split.
- ``features``: what the head contributes (features, BADGE factors).
"""
