"""Queue backends behind one contract (`Queue`)."""

from gateway.queue.base import Queue
from gateway.queue.memory import MemoryQueue

__all__ = ["MemoryQueue", "Queue"]
