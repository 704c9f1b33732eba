"""The OpenAPI document: it matches the routes, enums and error codes of the code, and a live
gateway fuzzed by schemathesis answers only what it documents, never with a 5xx.
"""

from __future__ import annotations

import ast
import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import gateway
from gateway import constants as c
from gateway import http
from gateway.app import create_app
from gateway.clients import add_client
from gateway.commands import Command, Status
from gateway.openapi import build_openapi
from gateway.validation import ENVELOPE_FIELDS, SHORT_FIELDS
from tests.conftest import USER, Gateway, GatewayFactory, Sandbox, Workspace

ENQUEUE = (c.ENQUEUE_PATH, "post")
COMMAND = (c.COMMANDS_PATH + "/{id}", "get")
PROTECTED = [ENQUEUE, COMMAND, (c.METRICS_PATH, "get")]
INLET = (c.INLETS_PATH + "/{name}", "post")
INLET_MODULES = ("inlets/receiver.py", "inlets/alertmanager.py", "inlets/events.py")
SOURCES = Path(gateway.__file__).parent


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item}


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = doc["components"][kind][name]
    return node


def documented_codes(doc: dict[str, Any], path: str, method: str) -> dict[int, set[str]]:
    """status → the error codes the document allows for that answer of the operation."""
    found: dict[int, set[str]] = {}
    for status, response in doc["paths"][path][method]["responses"].items():
        content = resolve(doc, response)["content"]
        schema = content.get("application/json", {}).get("schema", {})
        for part in schema.get("allOf", []):
            code = part.get("properties", {}).get("error", {}).get("properties", {}).get("code")
            if code:
                found[int(status)] = set(code["enum"])
    return found


@pytest.fixture
def document(workspace: Workspace) -> dict[str, Any]:
    env = {"GATEWAY_TELEGRAM_WEBHOOK_PATH": "/hooks/tg"}
    return build_openapi(workspace.config("http://127.0.0.1:9", env))


# --- the document against the code ----------------------------------------------------------


async def test_paths_and_methods_are_the_apps_routes(workspace: Workspace) -> None:
    config = workspace.config("http://127.0.0.1:9", {"GATEWAY_TELEGRAM_WEBHOOK_PATH": "/hooks/tg"})
    app = create_app(config)
    try:
        routes = {
            (route.resource.canonical, route.method.lower())
            for route in app.router.routes()
            if route.resource is not None
        }
    finally:
        await app[gateway.keys.BOT].session.close()
    # aiohttp answers HEAD wherever it answers GET; HEAD is not part of the contract.
    routes -= {(path, "head") for path, method in routes if method == "get"}
    doc = build_openapi(config)
    assert operations(doc) == routes
    assert ("/hooks/tg", "post") in routes


def test_enums_and_fields_follow_the_code(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    short, general = schemas["ShortForm"], schemas["GeneralForm"]
    assert general["properties"]["method"]["enum"] == list(c.ALLOWED_METHODS)
    params = general["properties"]["params"]["properties"]
    for parse_mode in (short["properties"]["parse_mode"], params["parse_mode"]):
        assert [mode for mode in parse_mode["enum"] if mode is not None] == list(c.PARSE_MODES)
    statuses = [s.value for s in Status]
    for name in ("Accepted", "Duplicate", "Command"):
        assert schemas[name]["properties"]["status"]["enum"] == statuses
    short_only = {"text", "expect_reply"}  # validation._short names them itself
    envelope = {*ENVELOPE_FIELDS, "fetch"}  # the media door takes `fetch` off every body
    assert set(short["properties"]) == {*short_only, *SHORT_FIELDS, *envelope}
    assert set(general["properties"]) == {"method", "params", *envelope}
    json_types = {int: "integer", str: "string", bool: "boolean", dict: "object"}
    for name, types in SHORT_FIELDS.items():
        prop = resolve(document, short["properties"][name])
        if name == "chat_id":
            chat_id = resolve(document, prop["oneOf"][0])["oneOf"]
            assert [t["type"] for t in chat_id] == [json_types[t] for t in types]
        elif "type" in prop:
            assert prop["type"] == [*(json_types[t] for t in types), "null"], name


def test_command_schema_is_what_public_shows(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["Command"]
    shown = set(Command(method="sendMessage", params={"chat_id": 1, "text": "x"}).public())
    assert set(schema["required"]) == shown
    assert shown <= set(schema["properties"])


def _error_codes(module: str) -> Iterator[tuple[str, int, str]]:
    """(function, status, code) of every error the module's code can answer with."""
    tree = ast.parse((SOURCES / module).read_text())
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for call in ast.walk(func):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
                continue
            kwargs = {k.arg: _constant(k.value) for k in call.keywords}
            if call.func.id == "InputError" and kwargs.get("code") is not None:
                yield func.name, kwargs.get("status", 400), kwargs["code"]
            elif call.func.id == "error_response" and len(call.args) >= 2:
                status, code = _constant(call.args[0]), _constant(call.args[1])
                if status is not None and code is not None:
                    yield func.name, status, code


def _constant(node: ast.expr) -> Any:
    return node.value if isinstance(node, ast.Constant) else None


#: Which operations answer with the errors raised in which module (or function of it).
ERROR_SOURCES: dict[str, list[tuple[str, str]]] = {
    "validation.py": [ENQUEUE],
    "bodycheck.py": [ENQUEUE],
    "http.py:read_json_object": [ENQUEUE],
    "http.py:storage_unavailable": PROTECTED,
    "api.py:_reply_target": [ENQUEUE],
    "api.py:check_scope": [ENQUEUE],
    "api.py:get_command": [COMMAND],
    "api.py:_wait_seconds": [COMMAND],
    "auth.py": PROTECTED,
    "webhook.py": [("{webhook}", "post")],
    "media/intake.py": [ENQUEUE],
    "media/checks.py": [ENQUEUE],
    "media/service.py": [ENQUEUE],
    "media/fetch.py": [ENQUEUE],
    "media/door.py": [ENQUEUE],
    "inlets/receiver.py": [INLET],
    "inlets/alertmanager.py": [INLET],
    "inlets/events.py": [INLET],
}
MEDIA_MODULES = (
    "media/intake.py",
    "media/checks.py",
    "media/service.py",
    "media/fetch.py",
    "media/door.py",
)


def test_every_error_code_is_documented_for_its_routes(document: dict[str, Any]) -> None:
    produced: set[str] = {"internal_error"}
    every = operations(document)
    modules = ("validation.py", "bodycheck.py", "http.py", "api.py", "auth.py", "webhook.py")
    for module in (*modules, *MEDIA_MODULES, *INLET_MODULES):
        for function, status, code in _error_codes(module):
            produced.add(code)
            if module == "http.py" and function == "json_errors":
                targets = sorted(every)  # a bug can happen anywhere
            else:
                key = module if module in ERROR_SOURCES else f"{module}:{function}"
                assert key in ERROR_SOURCES, f"{key} raises {code!r}: which routes answer it?"
                targets = ERROR_SOURCES[key]
            for path, method in targets:
                path = path.replace("{webhook}", "/hooks/tg")
                codes = documented_codes(document, path, method)
                assert code in codes.get(status, set()), f"{method} {path}: {status} {code}"
    # ... and the document promises nothing the code cannot say (aiohttp's own 404/405/413
    # are mapped by json_errors).
    documented = {
        code
        for path, method in every
        for codes in documented_codes(document, path, method).values()
        for code in codes
    }
    assert documented <= produced | set(http._STATUS_CODES.values())


async def test_served_document_is_public_and_valid(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory() as gw, gw.http.get(gw.url + c.OPENAPI_PATH) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        served = await resp.json()
    assert served == json.loads(json.dumps(build_openapi(gw.config)))
    schemathesis.openapi.from_dict(served).validate()


# --- schemathesis against a live gateway ------------------------------------------------------

RESPONSE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: For schema-violating input: the gateway must refuse it (else the schema is too strict).
NEGATIVE_CHECKS = [*RESPONSE_CHECKS, negative_data_rejection]
#: Operations whose bodies are someone else's schema, parsed leniently on purpose: aiogram reads
#: Telegram's Updates in pydantic's lax mode (`"update_id": false` is update 0).
LENIENT = {"telegramWebhook"}
MAX_EXAMPLES = {ENQUEUE: 300, COMMAND: 150}
DEFAULT_MAX_EXAMPLES = 60
#: Chats the fuzzed commands may reach (others fail in the sandbox with "chat not found").
CHATS = (USER, 3333, 1, -1, -5000)


@dataclass
class FuzzReport:
    """What the fuzzing did: the statuses answered per operation and mode, what went wrong."""

    answers: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[str] = field(default_factory=list)
    command_ids: list[str] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        return sum(self.answers.values(), Counter())

    @property
    def total(self) -> int:
        return self.statuses.total()


def fuzz(
    url: str,
    certificate: Path,
    credentials: dict[str, dict[str, str]],
    max_examples: dict[tuple[str, str], int],
) -> FuzzReport:
    """Run schemathesis against the live gateway (blocking: call it in a thread)."""
    report = FuzzReport()
    with requests.Session() as session:
        # Per request: requests lets REQUESTS_CA_BUNDLE override a session's `verify`.
        session.verify = str(certificate)
        _fuzz(report, session, url, credentials, max_examples)
    return report


def _fuzz(
    report: FuzzReport,
    session: requests.Session,
    url: str,
    credentials: dict[str, dict[str, str]],
    max_examples: dict[tuple[str, str], int],
) -> None:
    # Fetched here rather than with `from_url`, which leaves out the operation serving it.
    document = session.get(url + c.OPENAPI_PATH, verify=session.verify, timeout=30).json()
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config())
    # The main client most of the time; the others for their 401/403/429.
    main, *others = credentials.values()
    headers = st.one_of(st.just(main), st.sampled_from(others))
    # In the document's order: POST /enqueue_command first makes ids to GET /commands/{id} with.
    in_order = [
        (path, method, definition)
        for path, item in document["paths"].items()
        for method, definition in item.items()
    ]
    for path, method, definition in in_order:
        key = (path, method)
        operation = schema[path][method.upper()]
        modes = [GenerationMode.POSITIVE]
        if {"parameters", "requestBody"} & set(definition):
            modes.append(GenerationMode.NEGATIVE)  # else there is nothing to get wrong
        for mode in modes:
            label = f"{method.upper()} {path} [{mode.value}]"
            strategy = operation.as_strategy(mode)
            if key == COMMAND and report.command_ids:
                strategy = st.one_of(strategy, _existing(operation, mode, report.command_ids))
            negative = mode is GenerationMode.NEGATIVE and definition["operationId"] not in LENIENT
            checks = NEGATIVE_CHECKS if negative else RESPONSE_CHECKS
            test = _one_case(report, session, label, checks, url)
            runner = settings(
                max_examples=max_examples.get(key, DEFAULT_MAX_EXAMPLES),
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )(given(case=strategy, auth=headers)(test))
            try:
                runner()
            except Exception as exc:
                report.failures.append(f"{label}: {exc}")


def _existing(
    operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode, ids: list[str]
) -> st.SearchStrategy[Case[Any]]:
    """`GET /commands/{id}` of commands that exist (without waiting long for them)."""

    def ask(command_id: str) -> st.SearchStrategy[Case[Any]]:
        return operation.as_strategy(mode, path_parameters={"id": command_id}, query={"wait": 0.2})

    return st.sampled_from(ids).flatmap(ask)


def _one_case(
    report: FuzzReport, session: requests.Session, label: str, checks: list[Any], url: str
) -> Callable[[Case[Any], dict[str, str]], None]:
    def test(case: Case[Any], auth: dict[str, str]) -> None:
        case.headers.update(auth)
        response = case.call(base_url=url, session=session, verify=session.verify, timeout=30)
        report.answers[label][response.status_code] += 1
        if response.status_code == 202:
            report.command_ids.append(response.json()["id"])
        case.validate_response(response, checks=checks)

    return test


#: Inputs that made the gateway answer 500: the chat ids were seen while writing the schema,
#: the update by schemathesis.
EDGE_CASES = [
    pytest.param(ENQUEUE, {"text": "hi", "chat_id": "²"}, 400, id="superscript-digit-chat-id"),
    pytest.param(ENQUEUE, {"text": "hi", "chat_id": "--5"}, 400, id="double-minus-chat-id"),
    pytest.param(("{webhook}", "post"), {"update_id": 1}, 200, id="update-of-no-known-type"),
]


@pytest.mark.parametrize(("operation", "body", "status"), EDGE_CASES)
async def test_edge_cases_get_documented_answers(
    gateway: Gateway,
    workspace: Workspace,
    operation: tuple[str, str],
    body: dict[str, Any],
    status: int,
) -> None:
    path, method = operation
    path = path.replace("{webhook}", gateway.config.telegram.webhook_path)
    schema = schemathesis.openapi.from_dict(build_openapi(gateway.config))
    case = schema[path][method.upper()].Case(
        body=body,
        media_type="application/json",
        headers={**gateway.auth, c.SECRET_TOKEN_HEADER: gateway.config.secret_token.reveal()},
    )
    certificate = str(workspace.root / "certs/certificate.pem")
    response = await asyncio.to_thread(case.call, base_url=gateway.url, verify=certificate)
    case.validate_response(response, checks=RESPONSE_CHECKS)
    assert response.status_code == status, response.text


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_server_errors_or_undocumented_answers(
    workspace: Workspace,
    gateway_factory: GatewayFactory,
    sandbox: Sandbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two allowed users, so the short form without chat_id answers with several ids.
    workspace.write("config/secrets/allowed_user.txt", f"{USER}\n3333\n")
    scoped, _ = add_client(workspace.clients_file, "scoped", chats=[USER], methods=["sendMessage"])
    slow, _ = add_client(workspace.clients_file, "slow", rate_per_second=1.0)
    for chat in CHATS:
        await sandbox.create_chat(chat, "private" if chat > 0 else "group")
    async with gateway_factory() as gw:
        secret = gw.config.secret_token.reveal()
        credentials = {
            "tests": {**gw.auth, c.SECRET_TOKEN_HEADER: secret},
            "scoped": {"Authorization": f"Bearer {scoped}"},
            "slow": {"Authorization": f"Bearer {slow}"},
            "unknown": {"Authorization": "Bearer gwt_not-a-token"},
        }
        started = asyncio.get_running_loop().time()
        report = await asyncio.to_thread(
            fuzz, gw.url, workspace.root / "certs/certificate.pem", credentials, MAX_EXAMPLES
        )
        elapsed = asyncio.get_running_loop().time() - started
    summary = (
        f"schemathesis {schemathesis.__version__} ran {report.total} examples in "
        f"{elapsed:.1f}s, {len(report.failures)} failures"
    )
    with capsys.disabled():  # the numbers are wanted in every run's output
        print(f"\n{summary}")
    for label, answers in report.answers.items():
        print(f"  {label}: {answers.total()} examples, statuses {dict(sorted(answers.items()))}")
    assert not report.failures, "\n\n".join([summary, *report.failures])
    # The fuzzing got past validation: commands were accepted, repeated and looked up.
    assert {200, 202} <= set(report.answers[f"POST {c.ENQUEUE_PATH} [positive]"])
    assert 200 in report.answers[f"GET {c.COMMANDS_PATH}/{{id}} [positive]"]
