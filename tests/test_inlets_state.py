"""A group's state as stored: JSON that reads back as the state, and older rows still read."""

from __future__ import annotations

import json
from typing import Any

from gateway.inlets import alertmanager, alerts
from gateway.queue.threads import Thread, decode_state, encode_state, encode_thread_state


def _payload(resolved_first: bool, group_status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="Load"}',
        "status": group_status,
        "receiver": "tg",
        "groupLabels": {"alertname": "Load"},
        "alerts": [
            {
                "status": "resolved" if resolved_first and i == 0 else "firing",
                "labels": {"alertname": "Load", "instance": f"h{i}", "ünï": "çödé"},
                "annotations": {"summary": f"load on h{i}", "n": i, "flag": i % 2 == 0},
                "startsAt": "2026-01-01T00:00:00Z",
                "fingerprint": f"fp{i}",
            }
            for i in range(4)
        ],
    }


def _notify(thread: Thread, payload: dict[str, Any]) -> str:
    (notification,) = alertmanager.parse(json.loads(json.dumps(payload)), "group")
    thread.state = alerts.merge(thread.state, notification)
    return encode_thread_state(thread)


def test_reused_alert_json_is_the_state_json() -> None:
    thread = Thread("am", "1", "g")
    steps = [(False, "firing"), (True, "firing"), (True, "firing"), (False, "firing")]
    for step, (resolved_first, status) in enumerate([*steps, (True, "resolved")]):
        before = dict(thread.state.get("alerts", {}))
        text = _notify(thread, _payload(resolved_first, status))
        assert text == encode_state(thread.state), step
        assert json.loads(text) == thread.state
        if step in (1, 2, 3):  # alerts that did not change are the stored objects still
            assert thread.state["alerts"]["fp3"] is before["fp3"]
    assert all(a["status"] == "resolved" for a in json.loads(text)["alerts"].values())


def test_a_changed_alert_is_encoded_anew() -> None:
    thread = Thread("am", "1", "g")
    _notify(thread, _payload(False))
    thread.state = {**thread.state, "silence": {"by": "ann", "until": 5}}
    thread.state["alerts"] = {**thread.state["alerts"], "fp1": {"status": "firing", "labels": {}}}
    text = encode_thread_state(thread)
    assert json.loads(text) == thread.state
    assert text == encode_state(thread.state)
    thread.state = {"storm": {"k": {"title": "x"}}, "single": {}}
    assert encode_thread_state(thread) == encode_state(thread.state)


def test_a_storm_encodes_every_entry() -> None:
    thread = Thread("storm", "1", "storm")
    entries: dict[str, Any] = {}
    for n in range(5):
        entries = {**entries, f"g{n}": {"title": f"G{n}", "status": "firing", "count": n}}
        single = thread.state.get("single") or {"alerts": {}, "status": "firing"}
        thread.state = {"storm": entries, "single": single, "single_key": "g0"}
        text = encode_thread_state(thread)
        assert text == encode_state(thread.state)
        assert json.loads(text) == thread.state
    # Keys that are not strings are written as JSON writes them.
    thread.state = {"storm": {1: {"title": "one"}}, "n": None}
    assert encode_thread_state(thread) == encode_state(thread.state)


def test_states_stored_by_the_stdlib_encoder_still_read() -> None:
    """Rows written before orjson: compact `json` with `ensure_ascii=False`; and what orjson
    refuses but that encoder could write (NaN, a lone surrogate) reads through `json`."""
    thread = Thread("am", "1", "g")
    _notify(thread, _payload(True))
    old = json.dumps(thread.state, ensure_ascii=False, separators=(",", ":"))
    assert decode_state(old) == thread.state
    assert decode_state(encode_state(thread.state)) == thread.state
    assert json.loads(encode_state(thread.state)) == thread.state
    odd = decode_state('{"n":NaN,"s":"a\\ud800","f":1e-07}')
    assert odd["s"] == "a\ud800" and odd["f"] == 1e-07 and odd["n"] != odd["n"]
