"""Typed application state of the sandbox app."""

from __future__ import annotations

from aiohttp import web

from gateway.sandbox.state import SandboxState

#: The sandbox's state; in-process users (tests) can inspect it, everything is also on HTTP.
SANDBOX_STATE = web.AppKey("sandbox_state", SandboxState)
