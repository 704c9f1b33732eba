"""GitHub's own published webhook examples (`@octokit/webhooks-examples`, fetched at test time
with `npm pack`), signed for real, posted to a GitHub inlet."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gateway.inlets.auth import signature
from gateway.sandbox import SandboxSettings
from tests.conftest import GatewayFactory, Sandbox, Workspace
from tests.inlet_helpers import SECRET, eventually, inlet_toml, post

GROUP = -1005555555555
PACKAGE = "@octokit/webhooks-examples"
FAST = {
    "GATEWAY_FLOOD_GLOBAL_PER_SECOND": "1000",
    "GATEWAY_FLOOD_CHAT_PER_SECOND": "1000",
    "GATEWAY_FLOOD_GROUP_PER_MINUTE": "100000",
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def sandbox_settings() -> SandboxSettings:
    return SandboxSettings(global_per_second=1000, chat_per_second=1000, group_per_minute=100000)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """event name → GitHub's example payloads."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed: cannot fetch {PACKAGE}")
    where = tmp_path_factory.mktemp("octokit")
    try:
        done = subprocess.run(
            [npm, "pack", PACKAGE, "--silent"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm pack {PACKAGE} took too long (no registry access?)")
    tarballs = list(where.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        pytest.skip(f"npm pack {PACKAGE} failed: {done.stderr.strip()[:200]}")
    with tarfile.open(tarballs[0]) as archive:
        member = archive.extractfile("package/api.github.com/index.json")
        assert member is not None
        index = json.load(member)
    return {entry["name"]: entry["examples"] for entry in index}


def signed(body: bytes, event: str, delivery: str, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature(secret, body),
    }


async def test_githubs_examples(
    examples: dict[str, list[dict[str, Any]]],
    gateway_factory: GatewayFactory,
    workspace: Workspace,
    sandbox: Sandbox,
) -> None:
    workspace.write("config/secrets/inlet_gh.key", SECRET)
    await sandbox.create_chat(GROUP, "supergroup")
    async with gateway_factory(FAST, inlet_toml("gh", "github", [GROUP])) as gw:
        # A wrong signature: 401, nothing sent.
        body = json.dumps(examples["push"][0]).encode()
        headers = signed(body, "push", "d-0", secret="not-the-secret-at-all")
        code, _ = await post(gw, "gh", body, headers)
        assert code == 401
        code, _ = await post(gw, "gh", body, {"X-GitHub-Event": "push"})
        assert code == 401

        # ping: 200, nothing sent.
        body = json.dumps(examples["ping"][0]).encode()
        code, answer = await post(gw, "gh", body, signed(body, "ping", "d-ping"))
        assert code == 200 and answer == {"status": "ignored", "reason": "ping"}

        sent, ignored = 0, 0
        number = 0
        for event in (
            "push",
            "pull_request",
            "issues",
            "issue_comment",
            "release",
            "workflow_run",
            "check_suite",
            "label",
        ):
            for example in examples.get(event, []):
                number += 1
                body = json.dumps(example).encode()
                code, answer = await post(gw, "gh", body, signed(body, event, f"d-{number}"))
                assert code in (200, 202), (event, answer)
                if code == 202:
                    sent += 1
                else:
                    ignored += 1
                    assert answer["status"] == "ignored"
        assert sent > 50 and ignored > 0  # label is not a default event; successful runs
        found = await eventually(
            lambda: sandbox.messages(GROUP), lambda found: len(found) == sent, timeout=60
        )
        repo = examples["push"][0]["repository"]["full_name"]
        pushes = [m for m in found if "pushed" in m["text"]]
        assert pushes and any(repo in m["text"] for m in pushes)
        # Every example rendered through the default template (no plain fallback).
        async with gw.http.get(f"{gw.url}/metrics", headers=gw.auth) as resp:
            assert 'gateway_inlet_template_errors_total{inlet="gh"}' not in await resp.text()
        assert all(m["entities"] for m in found)

        # A re-delivery (same X-GitHub-Delivery) is not sent twice.
        body = json.dumps(examples["push"][0]).encode()
        code, answer = await post(gw, "gh", body, signed(body, "push", "d-1"))
        assert code == 200 and answer["status"] == "duplicate"


def test_examples_fixture_is_not_vendored() -> None:
    """The examples are GitHub's, fetched fresh: none are copied into the repository."""
    assert not list((Path(__file__).parent / "fixtures").rglob("*github*"))
