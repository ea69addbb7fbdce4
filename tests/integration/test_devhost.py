"""The local development host (``python -m podcast.devhost``) as a user runs it, and the
player page (``GET /api/player``) in a real headless Chromium driven by Selenium.

One host process for the module, against the session Azurite and an emulator of this
module's own (synthetic speech at 6 seconds of audio a second, so an asynchronous job takes
a few seconds and its progress can be seen). The browser tests (marker ``browser``) use the
system's Chromium and chromedriver (Debian ``chromium``, ``chromium-driver``; nothing is
downloaded); without them they skip, except under CI, where they fail. Screenshots go to
``artifacts/browser/`` (``PODCAST_ARTIFACTS`` overrides ``artifacts/``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import webvtt
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from emulator import RealtimeEmulator
from podcast.engine import audio
from testkit.azurite import AzuriteServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PODCAST_ARTIFACTS") or ROOT / "artifacts") / "browser"
EMULATOR_KEY = "devhost-emulator-key"
FUNCTION_KEY = "devhost-test-key"
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false")

SHORT_TEXT = (
    "The river bends because water is lazy. It takes the easiest path it can find. "
    "Over many years, the bends grow wider and wider. Then one spring flood cuts straight through."
)
PARAGRAPH = (
    "Rivers carry sand and stones from the mountains down to the sea, and every flood moves the "
    "bed a little further along the valley floor."
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class DevHost:
    """The running host: its base URL, the settings it was given and its output so far."""

    base: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    lines: list[str]

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        key: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url(path), data=data, method=method)  # noqa: S310 - loopback
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("x-functions-key", FUNCTION_KEY)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def paced_emulator() -> Iterator[RealtimeEmulator]:
    server = RealtimeEmulator(api_key=EMULATOR_KEY, engine="synthetic", speed=6.0).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def devhost(azurite: AzuriteServer, paced_emulator: RealtimeEmulator) -> Iterator[DevHost]:
    """``python -m podcast.devhost`` on a free port, stopped with SIGINT (it must exit 0)."""
    suffix = uuid.uuid4().hex[:10]
    settings = {
        "AZURE_OPENAI_AUDIO_ENDPOINT": paced_emulator.url,
        "AZURE_OPENAI_AUDIO_API_KEY": EMULATOR_KEY,
        "AZURE_OPENAI_AUDIO_MAX_RETRIES": "1",
        "AZURE_OPENAI_AUDIO_TIMEOUT_SECONDS": "20",
        "NARRATION_STORAGE": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "NARRATION_OUTPUT_CONTAINER": f"devhost-{suffix}",
        "NARRATION_JOBS_CONTAINER": f"devhost-{suffix}-jobs",
        "NARRATION_INPUT_CONTAINER": f"devhost-{suffix}-input",
        "NARRATION_QUEUE": f"devhost-{suffix}",
        # Small segments one at a time: an asynchronous job's progress moves in steps.
        "NARRATION_SEGMENT_WORDS": "24",
        "NARRATION_CONCURRENCY": "1",
    }
    env = {**os.environ, **settings, "PYTHONUNBUFFERED": "1"}
    port = _free_port()
    command = [sys.executable, "-m", "podcast.devhost", "--port", str(port), "--key", FUNCTION_KEY]
    process = subprocess.Popen(
        [*command, "--no-services", "--poll", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    ready: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                ready.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        ready.get(timeout=60)
    except queue.Empty:
        process.kill()
        pytest.fail("the dev host did not start:\n" + "".join(lines))
    host = DevHost(f"http://localhost:{port}/api", settings, process, lines)
    try:
        yield host
    finally:
        process.send_signal(signal.SIGINT)
        code: int | None
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            code = None
        with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            for name in (
                "NARRATION_OUTPUT_CONTAINER",
                "NARRATION_JOBS_CONTAINER",
                "NARRATION_INPUT_CONTAINER",
            ):
                with contextlib.suppress(ResourceNotFoundError):
                    service.delete_container(settings[name])
    assert code == 0, "the dev host did not stop cleanly on SIGINT:\n" + "".join(lines[-20:])


# --- The host, over HTTP ----------------------------------------------------------------------------


def test_the_host_announces_every_http_function_and_the_player_url(devhost: DevHost) -> None:
    output = "".join(devhost.lines)
    for route in ("narrations", "narrations/{id}", "narrations/{id}/captions.vtt", "health", "player"):
        assert f"{devhost.base}/{route} " in output
    assert f"Player: {devhost.base}/player?code={FUNCTION_KEY}" in output
    assert f"draining queue {devhost.env['NARRATION_QUEUE']}" in output


def test_the_function_key_is_required_as_a_header_or_code(devhost: DevHost) -> None:
    assert devhost.call("GET", "health", key=False)[0] == 401
    assert devhost.call("GET", "health", key=False, headers={"x-functions-key": "wrong"})[0] == 401
    assert devhost.call("GET", "health")[0] == 200
    assert devhost.call("GET", f"health?code={FUNCTION_KEY}", key=False)[0] == 200
    assert devhost.call("GET", "no-such-route")[0] == 404
    assert devhost.call("DELETE", "health")[0] == 404
    # The key is printed once at start, and never logged, though it came in the query string.
    announced = next(i for i, line in enumerate(devhost.lines) if line.startswith("Press Ctrl-C"))
    assert "GET /api/health -> 200" in "".join(devhost.lines[announced:])
    assert not any(FUNCTION_KEY in line for line in devhost.lines[announced:])


def test_the_access_log_shows_a_hostile_path_encoded_never_its_control_characters(devhost: DevHost) -> None:
    status, _, _ = devhost.call("GET", "narrations/abc%0d2026-12-03%20FORGED%1b%5b31m%00x")

    assert status == 404
    line = "GET /api/narrations/abc%0D2026-12-03%20FORGED%1B%5B31m%00x -> 404"
    deadline = time.monotonic() + 10  # the line is logged once the answer is sent, read by a thread
    while line not in "".join(devhost.lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = "".join(devhost.lines)
    assert line in logged
    assert not any(character in logged for character in ("\r", "\x1b", "\x00"))


def test_a_job_is_run_by_the_queue_worker_and_polled_to_its_result(devhost: DevHost) -> None:
    status, headers, body = devhost.call(
        "POST",
        "narrations",
        body={"text": "A queued job on the local host."},
        headers={"Prefer": "respond-async"},
    )
    assert status == 202
    assert headers["Location"] == f"{devhost.base}/narrations/{json.loads(body)['id']}"
    deadline = time.monotonic() + 20
    while (answer := devhost.call("GET", f"narrations/{json.loads(body)['id']}"))[0] == 202:
        assert time.monotonic() < deadline, "the job was not run"
        time.sleep(0.2)
    assert answer[0] == 200
    assert json.loads(answer[2])["transcript"]


def test_an_upload_to_the_input_container_is_narrated_by_the_blob_trigger(
    devhost: DevHost, azurite: AzuriteServer
) -> None:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.get_container_client(devhost.env["NARRATION_INPUT_CONTAINER"]).upload_blob(
            "notes/river.md", b"# River notes\n\nThe *river* bends because water is lazy.\n"
        )
        output = service.get_container_client(devhost.env["NARRATION_OUTPUT_CONTAINER"])
        deadline = time.monotonic() + 20
        while not output.get_blob_client("notes/river.json").exists():
            assert time.monotonic() < deadline, "the upload was not narrated"
            time.sleep(0.2)
        document = json.loads(output.get_blob_client("notes/river.json").download_blob().readall())
        wav = output.get_blob_client("notes/river.wav").download_blob().readall()
    assert document["transcript"].startswith("River notes")
    assert audio.wav_info(wav).duration_seconds == pytest.approx(document["duration_seconds"], abs=0.001)


# --- The player page in Chromium --------------------------------------------------------------------


def _browser_binaries() -> tuple[str, str]:
    chromium = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = "Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)"
    if IN_CI:
        pytest.fail(f"{reason}; CI must install them (scripts/setup.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = _browser_binaries()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if IN_CI:
            pytest.fail("selenium is not installed (requirements-dev.txt)")
        pytest.skip("selenium is not installed (requirements-dev.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1100,1400",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_script_timeout(20)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def _wait(driver: Any, script: str, timeout: float = 20.0) -> Any:
    """The first truthy value of ``script`` (JavaScript returning a value), polled."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            logs = [entry["message"] for entry in driver.get_log("browser")]
            raise AssertionError(f"timed out waiting for: {script}\nbrowser console: {logs}")
        time.sleep(0.05)


def _open(driver: Any, devhost: DevHost) -> None:
    driver.get(devhost.url(f"player?code={FUNCTION_KEY}"))
    _wait(driver, "return document.body.dataset.optionsLoaded === 'true'")


def _submit(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "submit").click()


def _cue_state(driver: Any) -> dict[str, Any]:
    return dict(
        driver.execute_script(
            "const b = [...document.querySelectorAll('#cues button')];"
            "return {starts: b.map((x) => Number(x.dataset.start)),"
            " current: b.findIndex((x) => x.classList.contains('current')),"
            " aria: b.findIndex((x) => x.getAttribute('aria-current') === 'true'),"
            " time: document.getElementById('audio').currentTime};"
        )
    )


@pytest.mark.browser
def test_a_text_is_narrated_played_and_followed_in_the_transcript(browser: Any, devhost: DevHost) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, devhost)
    voices = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#voice option")]
    assert "cedar" in voices
    assert "nova" not in voices  # the API's own list (OpenAPI enum), TTS-only voices excluded
    browser.find_element(By.CSS_SELECTOR, "#voice option[value=cedar]").click()
    _submit(browser, SHORT_TEXT)

    narration_id = _wait(
        browser,
        "const r = document.getElementById('result');"
        "return r.dataset.ready === 'true' && r.dataset.narrationId;",
    )
    status, _, body = devhost.call("GET", f"narrations/{narration_id}")
    assert status == 200
    narration = json.loads(body)
    assert narration["voice"] == "cedar"
    duration = float(
        _wait(
            browser,
            "const a = document.getElementById('audio');"
            "return a.readyState >= 1 && Number.isFinite(a.duration) && a.duration;",
        )
    )
    assert duration == pytest.approx(narration["duration_seconds"], abs=0.05)

    # It plays: time advances from the start.
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1], a = document.getElementById('audio');"
        "a.muted = true; a.play().then(() => done(true), (e) => done(String(e)));"
    )
    _wait(browser, "return document.getElementById('audio').currentTime > 0.2")
    browser.execute_script("document.getElementById('audio').pause()")

    cues = _cue_state(browser)
    assert len(cues["starts"]) >= 2, "expected several caption cues"
    seen = []
    for index in (0, len(cues["starts"]) - 1):
        browser.execute_script(
            "document.getElementById('audio').currentTime = arguments[0];", cues["starts"][index] + 0.05
        )
        state = _wait(
            browser,
            f"const b = document.querySelectorAll('#cues button')[{index}];"
            "return b.classList.contains('current') && b.getAttribute('aria-current') === 'true';",
        )
        assert state
        seen.append(_cue_state(browser)["current"])
    assert seen == [0, len(cues["starts"]) - 1]  # the highlight followed currentTime
    _screenshot(browser, "player-playing")

    # Selecting a sentence seeks there (by keyboard: focus and Enter).
    target = browser.find_elements(By.CSS_SELECTOR, "#cues button")[1]
    target.send_keys("\n")
    _wait(
        browser, f"return Math.abs(document.getElementById('audio').currentTime - {cues['starts'][1]}) < 0.3"
    )
    assert _cue_state(browser)["current"] == 1
    browser.execute_script("document.getElementById('audio').pause()")

    links = {
        a.get_attribute("id"): (a.get_attribute("href"), a.get_attribute("download"), a.is_displayed())
        for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")
    }
    assert links["download-audio"][0].split("?")[0] == narration["audio_url"].split("?")[0]
    assert all(href and shown for href, _, shown in links.values())
    assert links["download-captions"][0].startswith("blob:")
    assert links["download-captions"][1].endswith(".vtt")
    assert links["download-transcript"][1].endswith(".txt")
    # The cues the page shows are the captions' cues (read with an independent WebVTT parser).
    status, _, vtt = devhost.call("GET", f"narrations/{narration_id}/captions.vtt")
    assert status == 200
    parsed = webvtt.from_string(vtt.decode("utf-8"), strict=True).captions
    starts = [cue.start_time.in_milliseconds() / 1000 for cue in parsed]
    assert cues["starts"] == pytest.approx(starts, abs=0.001)
    shown = [words.text for words in browser.find_elements(By.CSS_SELECTOR, "#cues button .words")]
    assert shown == [" ".join(cue.text.split()) for cue in parsed]

    browser.set_window_size(390, 844)  # a phone
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    _screenshot(browser, "player-phone")
    browser.set_window_size(1100, 1400)


@pytest.mark.browser
def test_a_bad_voice_is_shown_beside_the_voice_field(browser: Any, devhost: DevHost) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, devhost)
    browser.execute_script("document.querySelector('#voice option:checked').value = 'nova';")
    _submit(browser, "Nothing should be narrated.")

    field = _wait(browser, "return document.getElementById('error').dataset.field")
    assert field == "voice"
    assert browser.find_element(By.ID, "voice").get_attribute("aria-invalid") == "true"
    assert "nova" in browser.find_element(By.ID, "voice-error").text
    assert browser.find_element(By.ID, "error").text.startswith("voice:")
    assert browser.switch_to.active_element == browser.find_element(By.ID, "voice")
    assert not browser.find_element(By.ID, "result").is_displayed()
    _screenshot(browser, "player-bad-voice")


@pytest.mark.browser
def test_a_conversation_is_asked_for_without_a_voice_and_voiced_by_the_hosts(
    browser: Any, devhost: DevHost
) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, devhost)
    browser.find_element(By.CSS_SELECTOR, "#mode option[value=conversation]").click()
    assert not browser.find_element(By.ID, "voice").is_enabled(), "the speakers' voices are used"
    _submit(browser, SHORT_TEXT)

    narration_id = _wait(
        browser,
        "const r = document.getElementById('result');"
        "return r.dataset.ready === 'true' && r.dataset.narrationId;",
        timeout=60,
    )
    status, _, body = devhost.call("GET", f"narrations/{narration_id}")
    assert status == 200
    narration = json.loads(body)
    assert narration["mode"] == "conversation"
    assert narration["transcript"].startswith(("Maya: ", "Theo: "))
    browser.find_element(By.CSS_SELECTOR, "#mode option[value=read]").click()
    assert browser.find_element(By.ID, "voice").is_enabled()


@pytest.mark.browser
def test_a_background_job_moves_the_progress_bar_then_plays(browser: Any, devhost: DevHost) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, devhost)
    browser.find_element(By.ID, "async").click()
    _submit(browser, "\n\n".join(f"Part {n}. {PARAGRAPH}" for n in range(1, 4)))

    seen: list[tuple[float, float]] = []
    deadline = time.monotonic() + 30
    while browser.execute_script("return document.getElementById('result').dataset.ready") != "true":
        assert time.monotonic() < deadline, f"the job did not finish; progress seen: {seen}"
        state = browser.execute_script(
            "const p = document.getElementById('progress');"
            "return p.hasAttribute('value') ? [p.value, p.max] : null;"
        )
        if state and (not seen or tuple(state) != seen[-1]):
            first_step = not any(0 < done < total for done, total in seen)
            seen.append((float(state[0]), float(state[1])))
            if first_step and 0 < state[0] < state[1]:
                _screenshot(browser, "player-progress")
        time.sleep(0.05)
    total = seen[-1][1]
    assert total >= 3, seen
    assert any(0 < done < total for done, _ in seen), f"no intermediate progress was shown: {seen}"
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert browser.find_element(By.ID, "status").get_attribute("aria-live") == "polite"
    assert "Done" in browser.find_element(By.ID, "status").text
    assert len(_cue_state(browser)["starts"]) >= 4
    _screenshot(browser, "player-job-done")


@pytest.mark.browser
def test_a_markdown_file_is_read_in_the_browser_and_narrated(
    browser: Any, devhost: DevHost, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    document = tmp_path / "field-notes.md"
    document.write_text("# Field notes\n\nThe *river* bends because water is lazy.\n", encoding="utf-8")
    _open(browser, devhost)
    browser.find_element(By.ID, "file").send_keys(str(document))
    _wait(browser, "return document.getElementById('text').value.includes('# Field notes')")
    assert browser.find_element(By.ID, "title").get_attribute("value") == "field-notes"
    browser.find_element(By.ID, "submit").click()

    narration_id = _wait(
        browser,
        "const r = document.getElementById('result');"
        "return r.dataset.ready === 'true' && r.dataset.narrationId;",
    )
    narration = json.loads(devhost.call("GET", f"narrations/{narration_id}")[2])
    assert narration["title"] == "field-notes"
    assert "river" in narration["transcript"].lower()
    _screenshot(browser, "player-markdown")
