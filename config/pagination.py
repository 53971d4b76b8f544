"""Keyset (cursor) pagination whose cursors are checked before they reach the database."""
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination


class IntegerCursorPagination(CursorPagination):
    """CursorPagination over an integer column (an id or a seq).

    DRF decodes a cursor's position as text and hands it to the query: a forged cursor such as
    `p=abc` became a ValueError (a 500) deep in the ORM. Here a position that is not a whole
    number, like any cursor DRF cannot decode, is a 400 that names the cursor.
    """

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
    invalid_cursor_message = _("Invalid cursor: use the `next` or `previous` link of a page.")

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise ValidationError({"cursor": [self.invalid_cursor_message]}) from None
        if cursor is not None and cursor.position is not None:
            position = str(cursor.position)
            if not position.lstrip("-").isdigit() or len(position) > 20:
                raise ValidationError({"cursor": [self.invalid_cursor_message]})
        return cursor
