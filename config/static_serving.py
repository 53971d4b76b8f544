"""WhiteNoise for a package that ships each compressible static file once, gzipped.

collectstatic (CompressedManifestStaticFilesStorage) writes every compressible file twice: as is
and as name.gz. The Lambda package keeps only the .gz copy (scripts/finish_package.py): the zip
is deflated anyway, so the two copies cost the same, and every browser asks for gzip. Stock
WhiteNoise would then know only "name.gz"; this middleware serves such a file under its own name:

- to a client that accepts gzip: the .gz file as it is, with Content-Encoding: gzip (what WhiteNoise
  serves to such a client when both copies are there);
- to one that does not: the same file decompressed while it is sent, with its real length. A Range
  header is ignored for these (a full 200 is allowed by RFC 9110); ETag, Last-Modified, 304s,
  Cache-Control and Vary: Accept-Encoding are WhiteNoise's.

Where both copies exist (make run, tests) nothing changes.
"""
import gzip
import os
from http import HTTPStatus
from types import SimpleNamespace
from wsgiref.headers import Headers

from whitenoise.middleware import WhiteNoiseMiddleware as StockWhiteNoiseMiddleware
from whitenoise.responders import FileEntry, Response, StaticFile


def gzip_size(path: str) -> int:
    """The uncompressed size a gzip file records in its trailer (ISIZE: size mod 2**32)."""
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return int.from_bytes(fh.read(4), "little")


class GzipOnlyStaticFile(StaticFile):
    """A static file that exists only as `path`.gz."""

    def get_file_stats(self, path, encodings, stat_cache):
        compressed = FileEntry(path + ".gz", stat_cache)
        plain = SimpleNamespace(path=compressed.path, size=gzip_size(compressed.path), mtime=compressed.mtime)
        return {None: plain, "gzip": compressed}

    def get_response(self, method, request_headers):
        if method in ("GET", "HEAD") and not self.is_not_modified(request_headers):
            path, headers = self.get_path_and_headers(request_headers)
            if not any(name.lower() == "content-encoding" for name, _ in headers):
                return Response(HTTPStatus.OK, headers, gzip.open(path, "rb") if method == "GET" else None)
        return super().get_response(method, request_headers)


class WhiteNoiseMiddleware(StockWhiteNoiseMiddleware):
    """WhiteNoise's middleware, plus name -> name.gz when only the .gz copy was shipped."""

    def add_file_to_dictionary(self, url, path, stat_cache=None):
        super().add_file_to_dictionary(url, path, stat_cache=stat_cache)
        if path.endswith(".gz") and url[:-3] not in self.files and not self.is_compressed_variant(path, stat_cache):
            self.files[url[:-3]] = self.gzip_only_file(path[:-3], url[:-3], stat_cache)

    def gzip_only_file(self, path, url, stat_cache):
        # WhiteNoise's get_static_file, for a file whose plain copy is not on disk.
        headers = Headers([])
        self.add_mime_headers(headers, path, url)
        self.add_cache_headers(headers, path, url)
        if self.allow_all_origins:
            headers["Access-Control-Allow-Origin"] = "*"
        if self.add_headers_function is not None:
            self.add_headers_function(headers, path, url)
        return GzipOnlyStaticFile(path, headers.items(), stat_cache=stat_cache)
