"""A cold start that answers health, OpenAPI or a job-status poll never loads the Realtime stack.

Each check runs in a fresh interpreter under ``python -X importtime`` (every module it
imports is listed on stderr), calls the functions as the Functions host does
(``testkit.host``), and must not have imported the openai SDK, websockets, numpy and
scipy (leveling), or the code that narrates. The job polled is a real one, queued (202) and
then succeeded (200 with a fresh link), in Azurite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Final

from azure.storage.queue import QueueClient

import function_app
from testkit import host
from testkit.azurite import AzuriteServer
from testkit.modules import NARRATING_STACK, REPO_ROOT, under

PROBE: Final = """
import asyncio, json, sys
import function_app
from testkit import host

async def main():
    answers = []
    health = await host.call_http(function_app.health, host.http_request("GET", "health"))
    answers.append(health.status)
    openapi = await host.call_http(function_app.openapi, host.http_request("GET", "openapi.json"))
    answers.append(openapi.status)
    for url in sys.argv[1:]:
        poll = host.http_request("GET", "narrations/{id}", url=url)
        job = await host.call_http(function_app.get_narration, poll)
        answers.append(job.status)
    await function_app.graph.aclose()
    print(json.dumps(answers))

asyncio.run(main())
"""


def imported_modules(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names - {"package"}


def probe(env: dict[str, str], *urls: str) -> tuple[list[int], set[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE, *urls],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), imported_modules(done.stderr)


def test_the_probe_sees_imports_and_the_stack_names_real_modules() -> None:
    """The check could fail: a narrating import shows up in the same probe's output."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import podcast.engine.realtime"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = under(imported_modules(done.stderr), NARRATING_STACK)
    assert {"openai", "websockets", "podcast.engine.realtime", "podcast.engine.receive"} <= set(found)


async def test_health_openapi_and_job_status_do_not_import_the_realtime_stack(
    jobs_env: dict[str, str], azurite: AzuriteServer
) -> None:
    settings = {k: v for k, v in jobs_env.items() if k.isupper()}
    request = host.http_request(
        "POST",
        "narrations",
        body=json.dumps({"text": "A short text for a job.", "voice": "coral"}).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
        url="https://podcast.example.net/api/narrations?code=key",
    )
    accepted = await host.call_http(function_app.create_narration, request)
    assert accepted.status == 202, accepted.json()
    location = accepted.headers["Location"]

    statuses, modules = probe(settings, location)
    assert statuses == [200, 200, 202]
    assert "function_app" in modules
    assert under(modules, NARRATING_STACK) == []

    with QueueClient.from_connection_string(azurite.connection_string, settings["NARRATION_QUEUE"]) as queue:
        assert await host.deliver(function_app.narration_worker, queue) is not None
    statuses, modules = probe(settings, location)
    assert statuses == [200, 200, 200], "the job succeeded: its poll signs a fresh link"
    assert under(modules, NARRATING_STACK) == []


def test_health_and_openapi_stay_light_without_any_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "NARRATION_"))}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [503, 200], "health names what is missing"
    assert under(imported_modules(done.stderr), NARRATING_STACK) == []
