"""Delivery: the queue worker that turns queued commands into Bot API calls.

- `engine`: the `Worker` — the ring of lanes (one per chat), claims, in-flight tasks, recording
  what each send came to until the storage takes it;
- `sender`: one command's Bot API call(s) on a flood slot: plain, a long text's parts, stored
  files, an inlet's deferred message, an internal service call;
- `settle`: what Telegram's answer means for the command (sent, paused, migrated, retried,
  failed) and the queue update that records it;
- `durable`: deliveries recorded (committed) but not yet confirmed on disk, which the lane's
  next send waits for, and the loop that records an outcome until the storage takes it;
- `policy`: the retry budget and backoff;
- `parts`: a long text's parts;
- `hooks`: the worker's collaborators' shapes (hooks, deferred resolver, service executor).
"""

from gateway.delivery.engine import Worker
from gateway.delivery.hooks import Deferred, DeliveryHooks, FailureHandler, ServiceExecutor
from gateway.delivery.policy import RetryBudget

__all__ = [
    "Deferred",
    "DeliveryHooks",
    "FailureHandler",
    "RetryBudget",
    "ServiceExecutor",
    "Worker",
]
