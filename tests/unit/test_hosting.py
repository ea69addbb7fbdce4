"""podcast.http.hosting: the function index read from an app's bindings, routes and
``%SETTING%`` expressions, as the Functions host reads them."""

from __future__ import annotations

from pathlib import Path

import azure.functions as func
import pytest

import function_app
from podcast.http.hosting import (
    function_index,
    function_timeout_seconds,
    match_route,
    poison_blob_threshold,
    queue_settings,
    resolve_setting,
    timespan_seconds,
)


def test_the_index_lists_every_trigger_of_an_app_with_its_binding() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="things/{id}", methods=["GET", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
    def thing(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")

    @app.route(route="all")
    def everything(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")

    @app.queue_trigger(arg_name="msg", queue_name="%Q%", connection="STORE")
    def work(msg: func.QueueMessage) -> None:
        return None

    @app.blob_trigger(arg_name="blob", path="in/{name}", connection="STORE")
    def upload(blob: func.InputStream) -> None:
        return None

    index = function_index(app)
    again = function_index(app)  # building the bindings twice must work

    http = {f.route: f for f in index.http}
    assert (http["things/{id}"].methods, http["things/{id}"].auth_level) == (("GET", "DELETE"), "ANONYMOUS")
    assert (http["all"].methods[:2], http["all"].auth_level) == (("GET", "POST"), "FUNCTION")
    assert http["things/{id}"].function is thing._function.get_user_function()
    assert [(q.queue_name, q.connection) for q in index.queues] == [("%Q%", "STORE")]
    assert [(b.path, b.connection) for b in index.blobs] == [("in/{name}", "STORE")]
    assert again == index


def test_the_index_of_the_app_holds_its_routes_and_triggers() -> None:
    index = function_index(function_app.app)
    assert {"narrations", "narrations/{id}", "player", "health"} <= {f.route for f in index.http}
    assert [q.queue_name for q in index.queues] == ["%NARRATION_QUEUE%"]
    assert [b.path for b in index.blobs] == ["%NARRATION_INPUT_CONTAINER%/{name}"]


@pytest.mark.parametrize(
    ("route", "path", "expected"),
    [
        ("narrations/{id}", "api/narrations/abc", {"id": "abc"}),
        ("narrations/{id}", "narrations/abc/", {"id": "abc"}),
        ("narrations/{id}/audio", "/api/NARRATIONS/abc/Audio", {"id": "abc"}),
        ("items/{id:int}/{rest?}", "items/7/x", {"id": "7", "rest": "x"}),
        ("narrations/{id}", "narrations", None),
        ("narrations/{id}", "narrations//", None),
        ("narrations/{id}", "narrations/a/b", None),
        ("health", "healthz", None),
    ],
)
def test_routes_match_as_the_host_matches_them(
    route: str, path: str, expected: dict[str, str] | None
) -> None:
    assert match_route(route, path) == expected


def test_binding_expressions_name_the_missing_setting() -> None:
    assert resolve_setting("%A%/{name}", {"A": "input"}) == "input/{name}"
    assert resolve_setting("plain", {}) == "plain"
    with pytest.raises(KeyError, match="MISSING"):
        resolve_setting("%MISSING%", {})
    with pytest.raises(ValueError, match="unbalanced"):
        resolve_setting("%A", {"A": "x"})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("00:01:00", 60.0),
        ("00:00:30.5", 30.5),
        ("1:2:3", 3723.0),
        ("1.00:00:00", 86_400.0),  # a day, as .NET writes a TimeSpan of one
        (" 2.03:04:05.1234567 ", 2 * 86_400 + 3 * 3600 + 4 * 60 + 5.1234567),
    ],
)
def test_host_json_time_spans_are_read_as_the_host_reads_them(value: str, seconds: float) -> None:
    assert timespan_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "60", "01:00", "x:y:z", "1:2:3:4", "-00:01:00", "00:01:00.12345678"])
def test_a_malformed_time_span_is_a_value_error(value: str) -> None:
    with pytest.raises(ValueError, match="time span"):
        timespan_seconds(value)


def test_host_json_settings_are_read_with_the_hosts_defaults(tmp_path: Path) -> None:
    settings = queue_settings()
    assert (settings.max_dequeue_count, settings.visibility_timeout) == (3, 60.0)
    assert function_timeout_seconds() == 600.0
    assert poison_blob_threshold() == 2
    empty = tmp_path / "host.json"
    empty.write_text("{}")
    assert (queue_settings(empty).max_dequeue_count, function_timeout_seconds(empty)) == (5, 300.0)
    assert poison_blob_threshold(empty) == 5
