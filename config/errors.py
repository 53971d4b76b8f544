"""Error pages and guards that sit in front of every view, so that under /api/ every error body is
JSON (the API's `{"detail": …}` shape) and bad input never reaches the database as a 500."""
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponseBadRequest, JsonResponse
from django.views import defaults


def is_api(request) -> bool:
    return request.path.startswith("/api/")


def too_large_detail() -> str:
    from django.conf import settings

    return f"Request body too large: the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes."


def bad_request(request, exception=None):
    """handler400: JSON under /api/ (413 for a body over the upload limit), the page elsewhere."""
    if is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"detail": too_large_detail()}, status=413)
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def page_not_found(request, exception=None):
    """handler404: JSON under /api/ (an unknown API path is not an HTML page), the page elsewhere."""
    if is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def permission_denied(request, exception=None):
    """handler403: JSON under /api/, the page elsewhere."""
    if is_api(request):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception)


def server_error(request):
    """handler500: JSON under /api/ (nothing internal in it), the page elsewhere."""
    if is_api(request):
        return JsonResponse({"detail": "Server error: it has been logged."}, status=500)
    return defaults.server_error(request)


class RejectNulMiddleware:
    """A NUL character in the query string is refused with 400 before any view runs.

    No legitimate parameter contains one, and PostgreSQL rejects it in text with a DataError (a
    500) wherever it reaches a query, e.g. `?author=`.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()):
            message = "Query parameters must not contain NUL characters."
            if is_api(request):
                return JsonResponse({"detail": message}, status=400)
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
