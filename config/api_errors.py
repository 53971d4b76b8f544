"""One JSON error shape for the whole API: {"detail": "<a sentence>", "errors": {field: [..]}}.

`detail` is always a sentence a person can read; `errors` (validation only) says which field.
Django's own exceptions raised by services (ValidationError, PermissionDenied, DoesNotExist) map
to 400/403/404 here, so views stay thin and bad input never becomes a 500.
"""
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler


def _first_message(data) -> str:
    if isinstance(data, dict):
        for key, value in data.items():
            message = _first_message(value)
            if message:
                return message if key in ("detail", "non_field_errors") else f"{key}: {message}"
        return ""
    if isinstance(data, list):
        return _first_message(data[0]) if data else ""
    return str(data)


def _flat(messages) -> list[str]:
    """A field's errors as sentences: a list field's per-item errors ({0: [...]}) become
    "Item 0: …", so `errors` is always {field: [str, ...]}."""
    if isinstance(messages, dict):
        return [f"Item {key}: {m}" if str(key).isdigit() else f"{key}: {m}"
                for key, value in messages.items() for m in _flat(value)]
    if isinstance(messages, list):
        return [m for item in messages for m in _flat(item)]
    return [str(messages)]


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError({"non_field_errors": exc.messages})
    elif isinstance(exc, ObjectDoesNotExist):
        what = type(exc).__qualname__.split(".")[0]
        exc = exceptions.NotFound(f"{what} not found.")
    elif isinstance(exc, PermissionDenied) and exc.args:
        exc = exceptions.PermissionDenied(str(exc.args[0]))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, RequestDataTooBig):
        from .errors import too_large_detail

        exc = exceptions.APIException(too_large_detail())
        exc.status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        errors = data if isinstance(data, dict) else {"non_field_errors": data}
        errors = {field: _flat(messages) for field, messages in errors.items()}
        response.data = {"detail": _first_message(errors) or "Invalid input.", "errors": errors}
    elif not (isinstance(data, dict) and "detail" in data):
        response.data = {"detail": _first_message(data)}
    return response


@csrf_exempt  # it changes nothing: a POST to an unknown path is a 404 whatever its CSRF token
def json_404(request, exception=None):
    return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)

