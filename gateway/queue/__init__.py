"""Queue backends behind one contract (`Queue`)."""

from gateway.queue.base import Queue
from gateway.queue.memory import MemoryQueue
from gateway.queue.sqlite import SqliteQueue

__all__ = ["MemoryQueue", "Queue", "SqliteQueue"]
