"""Static files shipped only gzipped (the Lambda package) are still served to every client.

config/static_serving.py over a STATIC_ROOT laid out as the package has it: a script only as
name.gz, an image as is. A gzip client gets the .gz bytes with Content-Encoding; a client without
gzip gets the original bytes with their real length; conditional requests, HEAD and Range behave.
"""
import gzip

import pytest
from django.test import RequestFactory, override_settings

from config.static_serving import WhiteNoiseMiddleware

SCRIPT = ("/* Herald */\n" + "console.log('a line that repeats');\n" * 400).encode()
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def middleware(tmp_path):
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "app.0123456789ab.js.gz").write_bytes(gzip.compress(SCRIPT, mtime=0))
    (tmp_path / "logo.0123456789ab.png").write_bytes(IMAGE)
    both = tmp_path / "both.0123456789ab.css"
    both.write_bytes(b"body{}" * 50)
    (tmp_path / "both.0123456789ab.css.gz").write_bytes(gzip.compress(both.read_bytes(), mtime=0))
    with override_settings(STATIC_ROOT=str(tmp_path), STATIC_URL="/static/", WHITENOISE_USE_FINDERS=False,
                           WHITENOISE_AUTOREFRESH=False, WHITENOISE_MAX_AGE=60):
        yield WhiteNoiseMiddleware(lambda request: pytest.fail(f"not served as a static file: {request.path}"))


def body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


def get(path, method="get", **headers):
    return getattr(RequestFactory(), method)(path, **headers)


def test_a_gzip_client_gets_the_gzip_copy(middleware):
    response = middleware(get("/static/vendor/app.0123456789ab.js", HTTP_ACCEPT_ENCODING="gzip, br"))
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    data = body(response)
    assert gzip.decompress(data) == SCRIPT
    assert int(response["Content-Length"]) == len(data)
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Vary"] == "Accept-Encoding"


def test_a_client_without_gzip_gets_the_file_decompressed(middleware):
    for headers in ({}, {"HTTP_ACCEPT_ENCODING": "identity"}, {"HTTP_ACCEPT_ENCODING": "*"}):
        response = middleware(get("/static/vendor/app.0123456789ab.js", **headers))
        assert response.status_code == 200
        assert not response.has_header("Content-Encoding")
        assert body(response) == SCRIPT
        assert int(response["Content-Length"]) == len(SCRIPT)
        assert response["Content-Type"].startswith("text/javascript")


def test_head_conditional_and_range_requests(middleware):
    url = "/static/vendor/app.0123456789ab.js"
    head = middleware(get(url, method="head"))
    assert head.status_code == 200 and int(head["Content-Length"]) == len(SCRIPT) and body(head) == b""
    first = middleware(get(url))
    again = middleware(get(url, HTTP_IF_NONE_MATCH=first["ETag"]))
    assert again.status_code == 304
    # Range over the decompressed file: the whole file instead (allowed), never gzip bytes.
    ranged = middleware(get(url, HTTP_RANGE="bytes=0-9"))
    assert ranged.status_code == 200 and body(ranged) == SCRIPT
    # Range with gzip: WhiteNoise's own handling of the .gz copy.
    ranged_gz = middleware(get(url, HTTP_RANGE="bytes=0-9", HTTP_ACCEPT_ENCODING="gzip"))
    assert ranged_gz.status_code == 206 and len(body(ranged_gz)) == 10
    assert middleware(get(url, method="post")).status_code == 405


def test_files_with_both_copies_or_none_are_served_as_whitenoise_does(middleware):
    png = middleware(get("/static/logo.0123456789ab.png", HTTP_ACCEPT_ENCODING="gzip"))
    assert body(png) == IMAGE and not png.has_header("Content-Encoding")
    css = middleware(get("/static/both.0123456789ab.css"))
    assert body(css) == b"body{}" * 50
    css_gz = middleware(get("/static/both.0123456789ab.css", HTTP_ACCEPT_ENCODING="gzip"))
    assert css_gz["Content-Encoding"] == "gzip"


def test_the_package_serves_through_this_middleware():
    from django.conf import settings

    assert "config.static_serving.WhiteNoiseMiddleware" in settings.MIDDLEWARE
    assert not any(m.startswith("whitenoise.") for m in settings.MIDDLEWARE)
