"""Control routes for the operator: inspection, flood limits, faults and statistics.

- `GET /sandbox/bots` → `{"bots": [{"bot_id", "username", "token_used", "chats", "webhook"}]}`
- `GET /sandbox/bots/{bot_id}/updates` → `{"pending": [...], "delivered": [...]}` (each with
  `update_id`, `type`, `chat_id`, `attempts`, `last_error`, `update`)
- `GET /sandbox/bots/{bot_id}/callbacks` → `{"callbacks": [...]}` with the bot's answers
- `GET /sandbox/limits`, `PUT /sandbox/limits` `{"global_per_second"?, "chat_per_second"?,
  "group_per_minute"?, "paid_per_second"?}` → the limits in force (`paid_per_second` 0: paid
  broadcast off)
- `GET /sandbox/stars[?bot_id=]`, `PUT /sandbox/stars` `{"balance", "bot_id"?}` → a bot's Stars
  balance, paid messages, Stars spent, refusals and recent counted sends (`gateway.sandbox.stars`)
- `GET /sandbox/faults`, `POST /sandbox/faults` `{"method", "count"?, "kind"?, "status"?,
  "retry_after"?, "bot_id"?}`, `DELETE /sandbox/faults` → `{"faults": [...]}`
- `GET /sandbox/stats`, `DELETE /sandbox/stats` → the counters (see `gateway.sandbox.stats`)
"""

from __future__ import annotations

from aiohttp import web

from gateway.sandbox.control import (
    ControlError,
    choose_bot,
    control,
    json_object,
    known_bot,
    sandbox_of,
)
from gateway.sandbox.faults import Fault
from gateway.sandbox.limits import FloodLimits
from gateway.sandbox.stars import stars_to_tenths
from gateway.sandbox.stats import Stats

ROUTES = web.RouteTableDef()


@ROUTES.get("/sandbox/bots")
@control
async def list_bots(request: web.Request) -> web.Response:
    """Every bot the sandbox knows (tokens are never shown)."""
    bots = sandbox_of(request).bots
    return web.json_response({"bots": [bots[bot_id].summary() for bot_id in sorted(bots)]})


@ROUTES.get("/sandbox/bots/{bot_id}/updates")
@control
async def list_updates(request: web.Request) -> web.Response:
    """A bot's pending updates and the recently delivered ones."""
    bot = known_bot(request)
    bot.updates.expire()
    pending = [bot.updates.pending[i].summary() for i in sorted(bot.updates.pending)]
    return web.json_response({"pending": pending, "delivered": list(bot.updates.history)})


@ROUTES.get("/sandbox/bots/{bot_id}/callbacks")
@control
async def list_callbacks(request: web.Request) -> web.Response:
    """The callback queries sent to a bot and how it answered them."""
    bot = known_bot(request)
    records = [
        {
            "callback_query_id": record.id,
            "user_id": record.user_id,
            "chat_id": record.chat_id,
            "message_id": record.message_id,
            "data": record.data,
            "answer": record.answer,
        }
        for record in sorted(bot.callbacks.values(), key=lambda r: r.sent_at)
    ]
    return web.json_response({"callbacks": records})


@ROUTES.get("/sandbox/limits")
@control
async def get_limits(request: web.Request) -> web.Response:
    """The flood limits in force."""
    return web.json_response(sandbox_of(request).flood.limits.as_dict())


@ROUTES.put("/sandbox/limits")
@control
async def put_limits(request: web.Request) -> web.Response:
    """Change some or all flood limits (the send history is kept)."""
    body = await json_object(request)
    flood = sandbox_of(request).flood
    unknown = set(body) - set(flood.limits.as_dict())
    if unknown:
        raise ControlError(400, f"unknown limit(s): {', '.join(sorted(unknown))}")
    try:
        flood.limits = FloodLimits(**{**flood.limits.as_dict(), **body})
    except (TypeError, ValueError) as exc:
        raise ControlError(400, str(exc)) from None
    return web.json_response(flood.limits.as_dict())


@ROUTES.get("/sandbox/stars")
@control
async def get_stars(request: web.Request) -> web.Response:
    """A bot's paid-broadcast account: balance, paid messages, Stars spent, recent sends."""
    bot = choose_bot(request)
    return web.json_response(bot.stars.as_dict(bot.bot_id))


@ROUTES.put("/sandbox/stars")
@control
async def put_stars(request: web.Request) -> web.Response:
    """Set a bot's Stars balance (`{"balance": 12.5}`); a bot not seen yet is created."""
    body = await json_object(request)
    unknown = set(body) - {"balance", "bot_id"}
    if unknown:
        raise ControlError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    if "balance" not in body:
        raise ControlError(400, "'balance' is required (a number of Stars)")
    bot = choose_bot(request, body, create=True)
    try:
        bot.stars.balance_tenths = stars_to_tenths(body["balance"])
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    return web.json_response(bot.stars.as_dict(bot.bot_id))


@ROUTES.get("/sandbox/faults")
@control
async def get_faults(request: web.Request) -> web.Response:
    """The armed faults."""
    return web.json_response({"faults": sandbox_of(request).faults.as_list()})


@ROUTES.post("/sandbox/faults")
@control
async def post_fault(request: web.Request) -> web.Response:
    """Arm a fault for the next `count` calls of a method."""
    try:
        fault = Fault.from_json(await json_object(request))
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    faults = sandbox_of(request).faults
    faults.add(fault)
    return web.json_response({"faults": faults.as_list()})


@ROUTES.delete("/sandbox/faults")
@control
async def delete_faults(request: web.Request) -> web.Response:
    """Disarm every fault."""
    faults = sandbox_of(request).faults
    faults.clear()
    return web.json_response({"faults": faults.as_list()})


@ROUTES.get("/sandbox/stats")
@control
async def get_stats(request: web.Request) -> web.Response:
    """Calls, answers, 429s and peak rates since start or the last reset."""
    return web.json_response(sandbox_of(request).stats.as_dict())


@ROUTES.delete("/sandbox/stats")
@control
async def delete_stats(request: web.Request) -> web.Response:
    """Reset the statistics (not the flood history)."""
    sandbox = sandbox_of(request)
    sandbox.stats = Stats()
    return web.json_response(sandbox.stats.as_dict())
