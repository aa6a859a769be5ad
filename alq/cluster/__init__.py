"""Average-linkage HAC of a pool, once per pool, for Cluster-Margin (Citovsky et al. 2021).

``exact`` (NN-chain on the distance matrix, small pools), ``knn`` (faiss
kNN graph), ``graph`` (RNN merging on that graph), ``linkage``
(dendrograms and cuts), ``store`` (the cluster directory and
:func:`load_clusters`), ``api`` (what ``alq cluster`` runs).
"""

from alq.cluster.api import ClusterOptions, cluster_pool, compute_clusters
from alq.cluster.store import load_clusters
from alq.cluster.update import update_clusters

__all__ = ["ClusterOptions", "cluster_pool", "compute_clusters", "update_clusters", "load_clusters"]
