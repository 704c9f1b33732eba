"""The sandbox: a local Telegram Bot API emulator speaking the real wire protocol.

Users point a bot (aiogram or anything else) at it to test integrations offline; the
project's tests use it as the boundary fake. Where it must choose, it behaves like Telegram.
See `app.create_sandbox_app` for serving it, `conversation` and `operations` for the control
API, `delivery` for webhook delivery and `limits` for the flood-control algorithm.
"""

from gateway.sandbox.app import create_sandbox_app
from gateway.sandbox.keys import SANDBOX_STATE
from gateway.sandbox.logs import SandboxAccessLogger, TokenRedactingFilter, redact
from gateway.sandbox.settings import SandboxSettings
from gateway.sandbox.state import SandboxState

__all__ = [
    "SANDBOX_STATE",
    "SandboxAccessLogger",
    "SandboxSettings",
    "SandboxState",
    "TokenRedactingFilter",
    "create_sandbox_app",
    "redact",
]
