"""Scale-out plumbing: run per-pair tasks on a process pool or a Ray cluster
(:mod:`bqx.cluster.executor`) and check that nothing stays on a node's local disk in cluster
mode (:mod:`bqx.cluster.checks`). See docs/cluster.md."""

from bqx.cluster.executor import Call, ClusterError, Done, Executor, ray_address

__all__ = ["Call", "ClusterError", "Done", "Executor", "ray_address"]
