"""``GET /api/player``: the page as the host serves it, its security headers, and that it is
self-contained (nothing loaded from another origin, only its own nonce'd inline code)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import function_app
from podcast.http.hosting import function_index
from testkit import host


class _Page(HTMLParser):
    """The tags of interest in the page: nonces, resource references and form controls."""

    def __init__(self) -> None:
        super().__init__()
        self.nonces: list[str | None] = []
        self.references: list[str] = []
        self.labels: set[str] = set()
        self.controls: list[str] = []
        self.inline_styles = 0
        self.handlers = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("script", "style"):
            self.nonces.append(attributes.get("nonce"))
        for name in ("src", "href"):
            if attributes.get(name):
                self.references.append(str(attributes[name]))
        if tag == "link":
            self.references.append(str(attributes.get("href")))
        if tag == "label" and attributes.get("for"):
            self.labels.add(str(attributes["for"]))
        if tag in ("input", "select", "textarea") and attributes.get("type") != "hidden":
            self.controls.append(str(attributes.get("id")))
        if "style" in attributes:
            self.inline_styles += 1
        self.handlers += sum(1 for name in attributes if name.startswith("on"))


async def _get() -> host.HttpAnswer:
    return await host.call_http(function_app.player, host.http_request("GET", "player", params={"code": "k"}))


async def test_the_page_is_served_with_a_strict_policy_and_a_fresh_nonce() -> None:
    first, second = await _get(), await _get()

    assert first.status == 200
    assert first.headers["Content-Type"] == "text/html; charset=utf-8"
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers["Referrer-Policy"] == "no-referrer"
    policy = first.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy)
    assert nonce is not None
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    page = _Page()
    page.feed(first.body.decode())
    assert page.nonces == [nonce.group(1), nonce.group(1)]  # one <style>, one <script>, both allowed
    assert nonce.group(1) not in second.body.decode()
    assert "{{nonce}}" not in first.body.decode()


async def test_the_page_loads_nothing_from_elsewhere_and_labels_every_control() -> None:
    page = _Page()
    page.feed((await _get()).body.decode())

    assert page.references == []  # no script, style, font or image from any URL: it works offline
    assert page.inline_styles == 0
    assert page.handlers == 0
    assert page.controls
    assert set(page.controls) <= page.labels


def test_the_route_is_a_function_key_protected_get() -> None:
    routes = {f.route: f for f in function_index(function_app.app).http}
    assert routes["player"].methods == ("GET",)
    assert routes["player"].auth_level == "FUNCTION"
