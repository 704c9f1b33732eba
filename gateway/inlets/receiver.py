"""The inlets' HTTP side: `POST /inlets/{name}`, and their wiring into the app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from gateway import constants as c
from gateway import keys
from gateway.bodycheck import loads_checked
from gateway.errors import InputError
from gateway.http import error_response
from gateway.inlets.actions import AlertActions
from gateway.inlets.auth import authentic
from gateway.inlets.events import Ignored
from gateway.inlets.service import Inlets
from gateway.inlets.show import ThreadShower

logger = logging.getLogger(__name__)

INLETS = web.AppKey("inlets", Inlets)
ACTIONS = web.AppKey("inlet_actions", AlertActions)


async def receive(request: web.Request) -> web.Response:
    """`POST /inlets/{name}`: a webhook of another tool → 202 once its commands are stored."""
    inlets = request.app[INLETS]
    name = request.match_info["name"]
    inlet = inlets.by_name.get(name)
    if inlet is None:
        raise InputError(f"no inlet {name!r}", code="not_found", status=404)
    body = await request.read()
    if not authentic(inlet, request.headers, body):
        inlets.metrics.outcome(name, "unauthorized")
        logger.warning(
            "inlet %s: refused a call from %s: wrong or missing credential", name, request.remote
        )
        response = error_response(401, "unauthorized", "wrong or missing credential")
        if inlet.kind in ("alertmanager", "grafana", "generic"):
            response.headers["WWW-Authenticate"] = 'Bearer realm="telegram-gateway"'
        return response
    try:
        # A lone surrogate (valid JSON) could not be stored or sent; absurd nesting would make
        # the encoders recurse. Refused here, naming where, before anything is stored.
        payload = loads_checked(body, max_values=c.MAX_INLET_VALUES, max_depth=c.MAX_INLET_DEPTH)
    except (ValueError, RecursionError):
        inlets.metrics.outcome(name, "invalid")
        raise InputError("the body is not JSON", code="invalid_json", field="body") from None
    except InputError:
        inlets.metrics.outcome(name, "invalid")
        raise
    try:
        answer = await inlets.accept(inlet, request.headers, payload)
    except Ignored as exc:
        inlets.metrics.outcome(name, "ignored")
        return web.json_response({"status": "ignored", "reason": exc.reason})
    except InputError:
        inlets.metrics.outcome(name, "invalid")
        raise
    inlets.metrics.outcome(name, "accepted")
    status = 200 if answer.get("status") == "duplicate" else 202
    # orjson: a tenth of `json.dumps`'s time (web.json_response), on every notification.
    return web.Response(
        body=orjson.dumps(answer), status=status, content_type="application/json", charset="utf-8"
    )


async def _actions(app: web.Application) -> AsyncIterator[None]:
    actions = app[ACTIONS]
    await actions.open()
    yield
    await actions.close()


def install(app: web.Application) -> None:
    """Mount `/inlets/{name}`, wire the worker's showThread resolver and the buttons' handler
    (call after the queue, outbox, worker, metrics and dispatcher are in `app`)."""
    queue, worker, outbox = app[keys.QUEUE], app[keys.WORKER], app[keys.OUTBOX]
    inlets = Inlets(app[keys.CONFIG].inlets, queue, outbox, worker, app[keys.METRICS])
    app[INLETS] = inlets
    worker.use_deferred(ThreadShower(queue, inlets.by_name, inlets.lifecycle))
    actions = AlertActions(inlets, queue, outbox)
    app[ACTIONS] = actions
    app[keys.DISPATCHER].include_router(actions.router())
    app.cleanup_ctx.append(_actions)
    app.router.add_post(c.INLETS_PATH + "/{name}", receive)
