"""The queue worker's historical import path; it lives in `gateway.delivery` now."""

from gateway.delivery import (
    Deferred,
    DeliveryHooks,
    FailureHandler,
    RetryBudget,
    ServiceExecutor,
    Worker,
)

__all__ = [
    "Deferred",
    "DeliveryHooks",
    "FailureHandler",
    "RetryBudget",
    "ServiceExecutor",
    "Worker",
]
