"""Keyset (cursor) pagination whose cursors have one strict, documented form."""
import re

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.utils.urls import replace_query_param

# A cursor is "<reverse>.<offset>.<position>": reverse 0 or 1, the offset DRF uses for ties (0 on
# our unique orderings, under its cutoff of 1,000), and the id or seq the page starts after
# (nothing for "from the start"). Every string of this form is a valid cursor, and nothing else is.
CURSOR_PATTERN = r"^[01]\.[0-9]{1,3}\.(-?[0-9]{1,18})?$"
_CURSOR = re.compile(CURSOR_PATTERN)
INVALID_CURSOR = "Invalid cursor: use the `next` or `previous` link of a page."


class IntegerCursorPagination(CursorPagination):
    """CursorPagination over an integer column (an id or a seq).

    DRF's cursors are base64 query strings whose position it hands to the query as text: a forged
    one such as `p=abc` became a ValueError (a 500) deep in the ORM, and an undecodable one a 404.
    Here a cursor either has the documented form (OpenAPI pattern) or is a 400 that names it.
    """

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        if not _CURSOR.match(encoded):
            raise ValidationError({"cursor": [INVALID_CURSOR]})
        reverse, offset, position = encoded.split(".")
        return Cursor(offset=int(offset), reverse=reverse == "1", position=position or None)

    def encode_cursor(self, cursor):
        position = "" if cursor.position is None else str(int(cursor.position))
        encoded = f"{int(bool(cursor.reverse))}.{min(int(cursor.offset), 999)}.{position}"
        return replace_query_param(self.base_url, self.cursor_query_param, encoded)

    def get_page_size(self, request):
        """The page size asked for, or the default; one that is not a whole number from 1 to
        max_page_size is a 400 (DRF would silently use the default)."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({"page_size": [f"A whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            if parameter["name"] == self.cursor_query_param:
                parameter["schema"]["pattern"] = CURSOR_PATTERN
                parameter["description"] = "Where the page starts: copy it from a page's `next` or `previous` link."
        return parameters
