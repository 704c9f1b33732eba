"""Several replicas on one PostgreSQL database: every replica accepts, one delivers."""

from gateway.cluster.leadership import Leadership
from gateway.cluster.replica import Replica

__all__ = ["Leadership", "Replica"]
