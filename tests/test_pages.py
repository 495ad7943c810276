"""The counter app's HTTP side: GET / makes a space, /space/<id> pages, the static bundle."""

from __future__ import annotations

import json
import os
import re

import pytest
import tornado.httpserver
import tornado.testing
import tornado.web

from server.handlers.pages import IMMUTABLE, Bundle, routes

pytestmark = pytest.mark.gen_test


async def get(http_client, base_url, path: str):
    return await http_client.fetch(base_url + path, follow_redirects=False, raise_error=False)


def manifest(client_dist) -> dict:
    return json.loads((client_dist / "manifest.json").read_text())


async def test_root_creates_a_space_and_redirects_to_it(http_client, base_url, store):
    first = await get(http_client, base_url, "/")
    second = await get(http_client, base_url, "/?pullInterval=off")
    assert first.code == second.code == 303
    assert first.headers["Cache-Control"] == "no-store"
    one = re.fullmatch(r"/space/([A-Za-z0-9_-]{1,64})", first.headers["Location"])
    two = re.fullmatch(r"/space/([A-Za-z0-9_-]{1,64})\?pullInterval=off", second.headers["Location"])
    assert one and two and one.group(1) != two.group(1)
    assert await store.space_exists(one.group(1))
    assert await store.space_exists(two.group(1))


async def test_space_page_serves_the_app_uncached(http_client, base_url, store, client_dist):
    space = await store.create_space()
    r = await get(http_client, base_url, f"/space/{space}")
    assert r.code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    html = r.body.decode()
    assets = manifest(client_dist)["assets"]
    assert f'src="/static/dist/{assets["app.js"]}"' in html
    assert f'href="/static/dist/{assets["style.css"]}"' in html
    assert 'id="count"' in html and 'id="increment"' in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from elsewhere


async def test_hashed_bundle_files_are_cached_for_good(http_client, base_url, client_dist):
    assets = manifest(client_dist)["assets"]
    js = await get(http_client, base_url, f"/static/dist/{assets['app.js']}")
    css = await get(http_client, base_url, f"/static/dist/{assets['style.css']}")
    assert js.code == css.code == 200
    assert js.headers["Cache-Control"] == css.headers["Cache-Control"] == IMMUTABLE
    assert "javascript" in js.headers["Content-Type"]
    assert css.headers["Content-Type"].startswith("text/css")
    assert js.body == (client_dist / assets["app.js"]).read_bytes()
    # Unhashed files (the manifest, the page) must be revalidated.
    unhashed = await get(http_client, base_url, "/static/dist/manifest.json")
    assert unhashed.code == 200
    assert unhashed.headers["Cache-Control"] == "no-cache"


async def test_static_files_stay_inside_dist(http_client, base_url, client_dist):
    assert (await get(http_client, base_url, "/static/dist/app-NOSUCHFILE.js")).code == 404
    escape = await get(http_client, base_url, "/static/dist/%2e%2e/%2e%2e/setup.cfg")
    assert escape.code in (403, 404)
    assert b"[metadata]" not in (escape.body or b"")


async def test_unknown_space_says_so_and_links_to_a_new_one(http_client, base_url):
    r = await get(http_client, base_url, "/space/nothing-here")
    assert r.code == 404
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    body = r.body.decode()
    assert "No such space" in body and "&quot;nothing-here&quot;" in body
    assert 'href="/"' in body


async def test_malformed_space_id_is_a_400_page(http_client, base_url):
    for path in ("/space/bad%20id", "/space/", "/space/" + "x" * 65, "/space/%3Cscript%3E"):
        r = await get(http_client, base_url, path)
        assert r.code == 400, path
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "<script>" not in r.body.decode()


def test_bundle_follows_rebuilds(tmp_path):
    bundle = Bundle(tmp_path)
    assert bundle.page() is None  # not built: the page handler answers 503
    assert bundle.asset("app.js") is None

    def build(name: str, stamp: int) -> None:
        (tmp_path / "index.html").write_text(f"<p>{name}</p>")
        (tmp_path / "manifest.json").write_text(
            json.dumps({"page": "index.html", "assets": {"app.js": name}, "hashed": [name]})
        )
        os.utime(tmp_path / "manifest.json", ns=(stamp, stamp))

    build("app-AAAA.js", 10**18)
    assert bundle.page() == b"<p>app-AAAA.js</p>"
    assert bundle.asset("app.js") == "/static/dist/app-AAAA.js"
    assert bundle.is_hashed("app-AAAA.js") and not bundle.is_hashed("manifest.json")
    build("app-BBBB.js", 10**18 + 1)
    assert bundle.asset("app.js") == "/static/dist/app-BBBB.js"
    assert not bundle.is_hashed("app-AAAA.js")
    (tmp_path / "manifest.json").write_text("{not json")
    assert bundle.page() is None


async def test_space_page_before_the_client_is_built_is_a_503(
    http_client, store, hub, settings, lifecycle, tmp_path
):
    deps = {"store": store, "hub": hub, "config": settings, "lifecycle": lifecycle}
    server = tornado.httpserver.HTTPServer(tornado.web.Application(routes(deps, dist=tmp_path)))
    sock, port = tornado.testing.bind_unused_port()
    server.add_sockets([sock])
    try:
        space = await store.create_space()
        r = await get(http_client, f"http://127.0.0.1:{port}", f"/space/{space}")
        assert r.code == 503
        assert "make run" in r.body.decode()
    finally:
        server.stop()
