"""Request parsers for the API."""
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, except that JSON nested deeper than Python can decode is a 400, not a
    RecursionError (a 500): `[[[[…]]]]` a thousand deep is a few kilobytes anyone can send."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


# What the token view accepts: JSON, or a form (`curl -d username=… -d password=…`).
TOKEN_PARSERS = [JSONParser, parsers.FormParser]

# What endpoints taking a picture accept: JSON, or multipart form data with the file.
UPLOAD_PARSERS = [JSONParser, parsers.MultiPartParser]
