"""Prometheus metrics: what was accepted, sent, failed, retried, throttled, and how fast."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import constants as c
from gateway.commands import Command
from gateway.delivery import DeliveryHooks
from gateway.flood import FloodController

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics(DeliveryHooks):
    """The gateway's metrics, in a registry of their own (one per app, so tests don't clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "gateway_commands_accepted",
            "Commands accepted for delivery, by method and source (api, or inlet:<name>)",
            ["method", "source"],
            registry=r,
        )
        self.sent_total = Counter(
            "gateway_commands_sent", "Commands delivered", ["method"], registry=r
        )
        self.failed_total = Counter(
            "gateway_commands_failed", "Commands failed for good", ["method", "reason"], registry=r
        )
        self.retries = Counter(
            "gateway_retries", "Deliveries put back for a retry", ["method", "reason"], registry=r
        )
        self.throttled = Counter(
            "gateway_telegram_429", "429 Too Many Requests answers from Telegram", registry=r
        )
        self.latency = Histogram(
            "gateway_delivery_latency_seconds",
            "From acceptance to Telegram's answer for delivered commands",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.depth = Gauge("gateway_queue_depth", "Commands queued or being sent", registry=r)
        self.database_bytes = Gauge(
            "gateway_queue_database_bytes",
            "Size of the queue database on disk: the file and its write-ahead log",
            registry=r,
        )
        self.pruned = Counter(
            "gateway_commands_pruned",
            "Final commands deleted after [queue] retention",
            registry=r,
        )
        self._accepted_by_method: dict[tuple[str, str], Counter] = {}
        self.updates = Counter(
            "gateway_webhook_updates", "Updates received on the webhook", ["type"], registry=r
        )
        self.updates_unparsed = Counter(
            "gateway_updates_unparsed",
            "Webhook updates aiogram could not validate (acknowledged, kept as dead letters)",
            registry=r,
        )
        self.updates_repeated = Counter(
            "gateway_updates_repeated",
            "Webhook updates received again and acknowledged without handling them again",
            registry=r,
        )
        # Replicas on PostgreSQL (gateway/cluster/): set when /metrics is scraped.
        self.leader = Gauge(
            "gateway_leader", "1 while this replica leads (delivers), else 0", registry=r
        )
        self.elections = Gauge(
            "gateway_leader_elections", "Times this replica became the leader", registry=r
        )

    def watch_paid_broadcast(self, flood: FloodController) -> None:
        """Export the flood controller's paid-broadcast counters (read at each scrape)."""
        self.registry.register(PaidBroadcastCollector(flood))

    def accepted_commands(self, commands: Iterable[Command], source: str = "api") -> None:
        """Count stored commands; `source` is "api" or "inlet:<name>" (gateway/inlets/)."""
        for command in commands:
            key = (command.method, source)
            child = self._accepted_by_method.get(key)
            if child is None:  # labels() costs a lock and a lookup: once per label set
                child = self._accepted_by_method[key] = self.accepted.labels(*key)
            child.inc()

    def sent(self, command: Command, latency: float) -> None:
        self.sent_total.labels(command.method).inc()
        self.latency.observe(latency)

    def failed(self, command: Command, reason: str) -> None:
        self.failed_total.labels(command.method, reason).inc()

    def retried(self, command: Command, reason: str) -> None:
        self.retries.labels(command.method, reason).inc()

    def flood_wait(self, command: Command, retry_after: float) -> None:
        self.throttled.inc()
        self.retries.labels(command.method, "too_many_requests").inc()


class PaidBroadcastCollector(Collector):
    """Paid broadcast: what was paid for, what it cost, and whether it is available."""

    def __init__(self, flood: FloodController) -> None:
        self._flood = flood

    def collect(self) -> Iterator[Metric]:
        flood = self._flood
        yield CounterMetricFamily(
            "gateway_paid_sends",
            "Messages Telegram accepted with allow_paid_broadcast (an album of N counts N)",
            value=flood.paid_messages,
        )
        yield CounterMetricFamily(
            "gateway_paid_stars",
            "Telegram Stars the paid sends cost (0.1 per message)",
            value=flood.paid_messages * c.PAID_STAR_TENTHS_PER_MESSAGE / 10,
        )
        yield CounterMetricFamily(
            "gateway_paid_broadcast_fallbacks",
            "Times Telegram said the Stars balance is too low and sends fell back to the free rate",
            value=flood.paid_fallbacks,
        )
        yield GaugeMetricFamily(
            "gateway_paid_broadcast_available",
            "1 while sends above the free rate may be paid for (on and not fallen back), else 0",
            value=int(flood.paid_available),
        )
