"""Flood control, driven by a fake clock: no sleeps, every run identical."""

from __future__ import annotations

import heapq
import math
import random
from collections import defaultdict
from collections.abc import Sequence

import pytest

from gateway.constants import (
    TELEGRAM_CHAT_PER_SECOND,
    TELEGRAM_GLOBAL_PER_SECOND,
    TELEGRAM_GROUP_PER_MINUTE,
)
from gateway.flood import ChatId, FloodController, FloodLimits, SlidingWindow


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def most_in_any_window(times: list[float], width: float) -> int:
    """The largest number of events inside any closed interval ``[t, t + width]``."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] < t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def send_in_order(
    flood: FloodController, clock: FakeClock, chats: Sequence[ChatId]
) -> list[tuple[ChatId, float]]:
    """A scheduler sending ``chats`` in order, sleeping whatever ``try_acquire`` asks for."""
    sent = []
    for chat in chats:
        while (delay := flood.try_acquire(chat)) > 0:
            clock.advance(delay)
        sent.append((chat, clock.now))
    return sent


def with_jitter(sent: list[tuple[ChatId, float]], jitter: float) -> list[tuple[ChatId, float]]:
    """When each send reaches the server: a little later, by a varying amount."""
    rng = random.Random(42)
    return [(chat, t + rng.uniform(0, jitter)) for chat, t in sent]


def check_sandbox_limits(arrivals: list[tuple[ChatId, float]], limits: FloodLimits) -> None:
    """Assert the sandbox's sliding windows would accept every arrival."""
    assert most_in_any_window([t for _, t in arrivals], 1.0) <= math.floor(limits.global_per_second)
    per_chat: defaultdict[ChatId, list[float]] = defaultdict(list)
    for chat, t in arrivals:
        per_chat[chat].append(t)
    for chat, times in per_chat.items():
        assert most_in_any_window(times, 1.0) <= max(1, math.floor(limits.chat_per_second))
        if isinstance(chat, int) and chat < 0:
            assert most_in_any_window(times, 60.0) <= limits.group_per_minute


def achieved_rate(sent: list[tuple[ChatId, float]]) -> float:
    # Counting the last second in the duration keeps the opening burst from flattering the rate.
    times = [t for _, t in sent]
    return len(times) / (max(times) - min(times) + 1.0)


# --- sustained streams ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("global_rate", "chat_rate", "n_chats"),
    [(30, 1, 300), (30, 2, 300), (20, 1, 50), (10, 0.5, 40)],
)
def test_round_robin_stream_stays_within_limits_and_reaches_rate(
    global_rate: float, chat_rate: float, n_chats: int
) -> None:
    limits = FloodLimits(global_per_second=global_rate, chat_per_second=chat_rate)
    clock = FakeClock()
    flood = FloodController(limits, clock)

    sent = send_in_order(flood, clock, [i % n_chats + 1 for i in range(3000)])

    check_sandbox_limits(with_jitter(sent, limits.margin_seconds / 2), limits)
    assert achieved_rate(sent) >= 0.97 * global_rate


def test_bursty_chats_scheduled_by_ready_time_still_reach_rate() -> None:
    # Each chat has 10 messages queued at once; a scheduler ordered by ready_at must interleave
    # chats to keep the bot busy while each single chat is held to 1/s.
    limits = FloodLimits()
    clock = FakeClock()
    flood = FloodController(limits, clock)
    pending = {chat: 10 for chat in range(1, 301)}
    heap = [(flood.ready_at(chat), chat) for chat in pending]
    heapq.heapify(heap)
    sent: list[tuple[ChatId, float]] = []
    while heap:
        ready, chat = heapq.heappop(heap)
        clock.now = max(clock.now, ready)
        if flood.try_acquire(chat) == 0.0:
            sent.append((chat, clock.now))
            pending[chat] -= 1
            if not pending[chat]:
                continue
        heapq.heappush(heap, (flood.ready_at(chat), chat))

    assert len(sent) == 3000
    check_sandbox_limits(with_jitter(sent, limits.margin_seconds / 2), limits)
    assert achieved_rate(sent) >= 0.97 * TELEGRAM_GLOBAL_PER_SECOND


def test_one_chat_is_held_to_its_rate() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    start = clock.now

    sent = send_in_order(flood, clock, [7] * 5)

    assert [t - start for _, t in sent] == pytest.approx([0.0, 1.02, 2.04, 3.06, 4.08])


# --- groups -----------------------------------------------------------------------------------


def test_group_is_limited_per_minute() -> None:
    limits = FloodLimits()
    clock = FakeClock()
    flood = FloodController(limits, clock)
    start = clock.now

    sent = send_in_order(flood, clock, [-42] * 60)

    check_sandbox_limits(with_jitter(sent, limits.margin_seconds / 2), limits)
    times = [t - start for _, t in sent]
    assert times[19] == pytest.approx(19 * 1.02)  # the first 20 only wait for the chat limit
    assert times[20] == pytest.approx(60.02)  # the 21st waits for the first to leave the minute
    assert times[40] == pytest.approx(2 * 60.02)


def test_many_groups_are_limited_independently() -> None:
    limits = FloodLimits()
    clock = FakeClock()
    flood = FloodController(limits, clock)
    groups = [-(i + 1) for i in range(30)]

    sent = send_in_order(flood, clock, groups * 40)

    check_sandbox_limits(with_jitter(sent, limits.margin_seconds / 2), limits)
    # 20 rounds fit in the first minute: the groups share the bot's rate, not each other's.
    assert sent[20 * 30 - 1][1] - sent[0][1] < 60.0


@pytest.mark.parametrize("chat", [42, "42", "@channel"])
def test_positive_ids_and_usernames_have_no_minute_limit(chat: ChatId) -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    start = clock.now

    sent = send_in_order(flood, clock, [chat] * 25)

    assert sent[-1][1] - start == pytest.approx(24 * 1.02)


def test_numeric_string_chat_id_is_the_same_chat() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    start = clock.now

    sent = send_in_order(flood, clock, ["-100123", -100123] * 15)

    # One chat (1/s), and a group: the 21st send waits for the minute window.
    assert sent[19][1] - start == pytest.approx(19 * 1.02)
    assert sent[20][1] - start == pytest.approx(60.02)


# --- pauses -----------------------------------------------------------------------------------


def test_pause_chat_delays_that_chat_exactly() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)

    flood.pause_chat(7, 3.0)

    assert flood.try_acquire(7) == pytest.approx(3.0)
    assert flood.ready_at(7) == pytest.approx(clock.now + 3.0)
    assert flood.try_acquire(8) == 0.0
    clock.advance(2.5)
    assert flood.try_acquire(7) == pytest.approx(0.5)
    clock.advance(0.5)
    assert flood.try_acquire(7) == 0.0


def test_pause_all_delays_every_chat_exactly() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)

    flood.pause_all(5.0)

    for chat in (1, -2, "@channel"):
        assert flood.try_acquire(chat) == pytest.approx(5.0)
    clock.advance(5.0)
    for chat in (1, -2, "@channel"):
        assert flood.try_acquire(chat) == 0.0
    assert flood.stats().sends_in_window == 3


@pytest.mark.parametrize("scope", ["chat", "all"])
def test_pause_is_extended_never_shortened(scope: str) -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)

    def pause(seconds: float) -> None:
        if scope == "chat":
            flood.pause_chat(7, seconds)
        else:
            flood.pause_all(seconds)

    pause(10.0)
    clock.advance(1.0)
    pause(2.0)
    assert flood.try_acquire(7) == pytest.approx(9.0)
    pause(15.0)
    assert flood.try_acquire(7) == pytest.approx(15.0)


def test_pause_chat_survives_pruning_and_leaves_other_chats_alone() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    flood.pause_chat(7, 300.0)

    clock.advance(200.0)
    assert flood.try_acquire(8) == 0.0  # runs the automatic sweep
    assert flood.forget_idle() == 0
    assert flood.try_acquire(7) == pytest.approx(100.0)


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
def test_invalid_pause_raises(seconds: float) -> None:
    flood = FloodController(FloodLimits(), FakeClock())
    with pytest.raises(ValueError, match="pause"):
        flood.pause_chat(1, seconds)
    with pytest.raises(ValueError, match="pause"):
        flood.pause_all(seconds)


# --- acquiring --------------------------------------------------------------------------------


def test_refused_acquire_records_nothing() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(global_per_second=2), clock)
    assert flood.try_acquire(1) == 0.0
    assert flood.try_acquire(2) == 0.0

    for _ in range(100):
        assert flood.try_acquire(3) == pytest.approx(1.02)
    assert flood.stats().sends_in_window == 2
    clock.advance(1.02)
    assert flood.try_acquire(3) == 0.0
    assert flood.try_acquire(4) == 0.0
    assert flood.try_acquire(5) > 0


def test_ready_at_never_precedes_now() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    flood.try_acquire(1)
    clock.advance(50.0)
    assert flood.ready_at(1) == clock.now
    assert flood.ready_at(99) == clock.now


# --- fractional rates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "window"),
    [(1, (1, 1.0)), (0.5, (1, 2.0)), (0.25, (1, 4.0)), (1.5, (1, 1.0)), (2.9, (2, 1.0))],
)
def test_fractional_chat_rate_rounds_down_to_a_whole_count(
    rate: float, window: tuple[int, float]
) -> None:
    assert FloodLimits(chat_per_second=rate).chat_window == window


def test_half_a_send_per_second_means_one_every_two_seconds() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(chat_per_second=0.5), clock)
    start = clock.now

    sent = send_in_order(flood, clock, [5] * 4)

    assert [t - start for _, t in sent] == pytest.approx([0.0, 2.02, 4.04, 6.06])


def test_fractional_global_rate() -> None:
    limits = FloodLimits(global_per_second=0.5)
    assert limits.global_window == (1, 2.0)
    clock = FakeClock()
    flood = FloodController(limits, clock)
    start = clock.now

    sent = send_in_order(flood, clock, [1, 2, 3])

    assert [t - start for _, t in sent] == pytest.approx([0.0, 2.02, 4.04])


# --- run-time changes -------------------------------------------------------------------------


def test_update_limits_applies_to_tracked_chats_and_keeps_recent_sends() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    start = clock.now
    assert flood.try_acquire(5) == 0.0

    flood.update_limits(FloodLimits(chat_per_second=0.5))

    assert flood.limits.chat_per_second == 0.5
    assert flood.try_acquire(5) == pytest.approx(2.02)
    sent = send_in_order(flood, clock, [5, 5])
    assert [t - start for _, t in sent] == pytest.approx([2.02, 4.04])


def test_update_limits_global_rate_both_ways() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(global_per_second=10), clock)
    send_in_order(flood, clock, list(range(1, 11)))
    assert flood.try_acquire(11) > 0

    flood.update_limits(FloodLimits(global_per_second=20))
    send_in_order(flood, clock, list(range(11, 21)))
    assert clock.now == 1000.0  # the raised limit made room at once
    assert flood.try_acquire(21) == pytest.approx(1.02)

    flood.update_limits(FloodLimits(global_per_second=5))
    # Only the 5 most recent sends matter now, and they are as old as the first ones.
    assert flood.try_acquire(21) == pytest.approx(1.02)


def test_update_limits_new_margin() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    flood.try_acquire(5)
    flood.update_limits(FloodLimits(margin_seconds=0.1))
    assert flood.try_acquire(5) == pytest.approx(1.1)


# --- memory -----------------------------------------------------------------------------------


def test_idle_chats_are_forgotten_automatically() -> None:
    limits = FloodLimits()
    clock = FakeClock()
    flood = FloodController(limits, clock)
    most_tracked = 0

    # 100k distinct chats, a third of them groups, over about an hour of fake time.
    for i in range(100_000):
        chat = -i if i % 3 == 0 else i
        while (delay := flood.try_acquire(chat)) > 0:
            clock.advance(delay)
        if i % 997 == 0:
            most_tracked = max(most_tracked, flood.stats().tracked_chats)

    # Chats last at most two longest windows (60.02 s) at 30 sends/s.
    bound = 2 * 61 * TELEGRAM_GLOBAL_PER_SECOND
    assert most_tracked <= bound
    assert flood.stats().tracked_chats <= bound


def test_forget_idle_drops_only_state_that_can_no_longer_delay_a_send() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    flood.try_acquire(5)
    flood.try_acquire(-5)
    flood.try_acquire("@channel")

    assert flood.forget_idle() == 0
    clock.advance(1.02)
    assert flood.forget_idle() == 2  # the private chat and the channel; the group's minute runs
    assert flood.stats().tracked_chats == 1
    clock.advance(59.0)
    assert flood.forget_idle() == 1
    assert flood.stats().tracked_chats == 0


def test_forget_idle_with_a_longer_threshold_keeps_more() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    flood.try_acquire(5)
    clock.advance(10.0)
    assert flood.forget_idle(older_than=30.0) == 0
    clock.advance(20.0)
    assert flood.forget_idle(older_than=30.0) == 1


def test_forgotten_group_still_keeps_its_limit() -> None:
    # Forgetting must never let a send through early: a full minute window is kept.
    clock = FakeClock()
    flood = FloodController(FloodLimits(group_per_minute=2, chat_per_second=10), clock)
    send_in_order(flood, clock, [-9, -9])
    clock.advance(30.0)
    flood.forget_idle()
    assert flood.try_acquire(-9) == pytest.approx(30.02)


def test_sliding_window_keeps_at_most_count_events() -> None:
    window = SlidingWindow(3, 1.0, margin=0.5)
    assert window.span == 1.5
    assert window.last is None
    for t in range(10):
        assert window.ready_at(float(t)) == float(t)
        window.record(float(t))
    assert window.last == 9.0
    assert window.in_window(9.0) == 2  # 8 and 9; 7.5 is the edge
    window.record(9.0)
    window.record(9.0)
    assert window.ready_at(9.0) == pytest.approx(10.5)
    assert window.in_window(9.0) == 3


def test_stats_snapshot() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(), clock)
    flood.try_acquire(1)
    flood.pause_chat(2, 5.0)
    flood.pause_all(3.0)

    stats = flood.stats()

    assert stats.tracked_chats == 2
    assert stats.paused_chats == 1
    assert stats.sends_in_window == 1
    assert stats.global_pause_remaining == pytest.approx(3.0)


# --- validation -------------------------------------------------------------------------------


def test_defaults_come_from_telegrams_limits() -> None:
    limits = FloodLimits()
    assert limits.global_per_second == TELEGRAM_GLOBAL_PER_SECOND
    assert limits.chat_per_second == TELEGRAM_CHAT_PER_SECOND
    assert limits.group_per_minute == TELEGRAM_GROUP_PER_MINUTE
    assert limits.global_window == (30, 1.0)
    assert limits.group_window == (20, 60.0)
    assert FloodController(clock=FakeClock()).limits == limits


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("global_per_second", 0),
        ("global_per_second", -30),
        ("global_per_second", math.nan),
        ("global_per_second", math.inf),
        ("global_per_second", "30"),
        ("global_per_second", True),
        ("chat_per_second", 0.0),
        ("chat_per_second", -1),
        ("group_per_minute", 0),
        ("group_per_minute", 2.5),
        ("group_per_minute", True),
        ("margin_seconds", -0.01),
        ("margin_seconds", math.nan),
    ],
)
def test_invalid_limits_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        FloodLimits(**{field: value})  # type: ignore[arg-type]


def test_zero_margin_is_allowed() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(margin_seconds=0.0), clock)
    flood.try_acquire(1)
    assert flood.try_acquire(1) == pytest.approx(1.0)


@pytest.mark.parametrize(("count", "window", "margin"), [(0, 1.0, 0.0), (1, 0.0, 0.0), (1, 1, -1)])
def test_invalid_sliding_window_raises(count: int, window: float, margin: float) -> None:
    with pytest.raises(ValueError, match="SlidingWindow"):
        SlidingWindow(count, window, margin)


def test_settle_counts_a_send_from_its_answer_less_the_margin() -> None:
    """A slow answer pushes the next send to the same chat back by its latency beyond the
    margin: the server counted it on arrival, no later than the answer."""
    clock = FakeClock()
    flood = FloodController(FloodLimits(global_per_second=30, chat_per_second=1), clock)
    assert flood.try_acquire(7) == 0.0
    acquired = flood.last_acquired
    clock.advance(0.5)  # the answer comes half a second later
    flood.settle(7, acquired)
    assert flood.ready_at(7) == pytest.approx(clock() - 0.02 + 1.02)


def test_settle_within_the_margin_keeps_the_acquisition_time() -> None:
    """An answer within the margin of the acquisition does not stretch the window at all."""
    clock = FakeClock()
    flood = FloodController(FloodLimits(global_per_second=30, chat_per_second=1), clock)
    assert flood.try_acquire(7) == 0.0
    acquired = flood.last_acquired
    clock.advance(0.015)
    flood.settle(7, acquired)
    assert flood.ready_at(7) == pytest.approx(acquired + 1.02)


def test_settle_keeps_the_global_window_ordered() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(global_per_second=2, chat_per_second=10), clock)
    assert flood.try_acquire(1) == 0.0
    first = flood.last_acquired
    clock.advance(0.1)
    assert flood.try_acquire(2) == 0.0
    clock.advance(0.4)
    flood.settle(1, first)  # answered after the second send was made
    # The window now holds 0.1 (second send) and 0.48 (first, settled less the margin): the
    # oldest leaves at 1.12.
    assert flood.ready_at(3) == pytest.approx(clock() - 0.4 + 1.02)


# --- Paid broadcast: two tiers -------------------------------------------------------------------


def paid_controller(clock: FakeClock, **kwargs: float) -> FloodController:
    limits = FloodLimits(global_per_second=3, chat_per_second=10, paid_per_second=6, **kwargs)
    return FloodController(limits, clock)


def test_the_free_tier_goes_first_and_only_sends_above_it_are_paid() -> None:
    clock = FakeClock()
    flood = paid_controller(clock)
    paid = []
    for chat in range(1, 8):
        if flood.try_acquire(chat) == 0.0:
            paid.append(flood.leaving(flood.last_acquired))
    # 3 free, then 3 paid up to the ceiling of 6 sends, then nothing until the window moves.
    assert paid == [False, False, False, True, True, True]
    assert flood.try_acquire(8) == pytest.approx(1.02)
    clock.advance(1.02)
    assert flood.try_acquire(8) == 0.0 and flood.last_paid is False  # free again first


def test_without_a_paid_tier_every_send_is_free() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(global_per_second=3, chat_per_second=10), clock)
    for chat in range(1, 4):
        assert flood.try_acquire(chat) == 0.0
        assert flood.leaving(flood.last_acquired) is False
    assert flood.try_acquire(4) > 0
    assert not flood.paid_available


def test_a_paid_album_stays_out_of_the_free_tier() -> None:
    clock = FakeClock()
    flood = paid_controller(clock)
    for chat in (1, 2, 3):
        assert flood.try_acquire(chat) == 0.0
    assert flood.try_acquire(4) == 0.0 and flood.last_paid
    flood.charge(4, 2, flood.last_acquired)  # an album of 3: all paid, 6 sends in the window
    assert flood.try_acquire(5) == pytest.approx(1.02)
    assert flood.leaving(clock()) is True


def test_running_out_of_stars_falls_back_to_the_free_rate_for_a_while() -> None:
    clock = FakeClock()
    flood = paid_controller(clock, paid_fallback_seconds=60.0)
    for chat in (1, 2, 3):
        assert flood.try_acquire(chat) == 0.0
    assert flood.paid_refused() is True  # logged once ...
    assert flood.paid_refused() is False  # ... not again while it lasts
    assert flood.paid_fallen_back and not flood.paid_available
    assert flood.try_acquire(4) == pytest.approx(1.02)  # the free tier only
    clock.advance(1.02)
    assert flood.try_acquire(4) == 0.0 and not flood.last_paid
    clock.advance(60.0)
    assert flood.paid_available and flood.paid_fallbacks == 1


def test_a_paid_slot_for_a_call_that_cannot_pay_waits_for_the_free_tier() -> None:
    clock = FakeClock()
    flood = paid_controller(clock)
    for chat in (1, 2, 3):
        assert flood.try_acquire(chat) == 0.0
    assert flood.try_acquire(4) == 0.0 and flood.last_paid
    acquired = flood.last_acquired
    assert flood.unpay(acquired) == pytest.approx(1.02)
    clock.advance(1.02)
    assert flood.unpay(acquired) == 0.0
    assert flood.leaving(acquired) is False  # now a free send


@pytest.mark.parametrize("paid", [0, -5, 3, 2.5, float("inf"), True])
def test_the_paid_ceiling_must_be_above_the_free_rate(paid: float) -> None:
    with pytest.raises(ValueError, match="paid_per_second"):
        FloodLimits(global_per_second=3, paid_per_second=paid)


def test_update_limits_turns_the_paid_tier_on_and_off() -> None:
    clock = FakeClock()
    flood = FloodController(FloodLimits(global_per_second=2, chat_per_second=10), clock)
    for chat in (1, 2):
        assert flood.try_acquire(chat) == 0.0
    assert flood.try_acquire(3) > 0
    flood.update_limits(FloodLimits(global_per_second=2, chat_per_second=10, paid_per_second=4))
    assert flood.try_acquire(3) == 0.0 and flood.last_paid
    flood.update_limits(FloodLimits(global_per_second=2, chat_per_second=10))
    assert flood.try_acquire(4) > 0 and not flood.paid_available
