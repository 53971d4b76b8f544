"""OpenAPI post-processing: every operation documents the errors it can answer with.

drf-spectacular documents the successful responses each view declares; the errors come from
shared code (validation, authentication, throttles, the JSON error handler), so they are added
here, all with the one error shape of config.api_errors.
"""
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "A sentence a person can read."},
        "errors": {
            "type": "object",
            "description": "Validation errors by field (400 only).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["detail"],
}
ERRORS = {
    "400": "Invalid input (the body, a query parameter, or a cursor).",
    "401": "Not logged in (send a session cookie or `Authorization: Token …`).",
    "403": "Not allowed: someone else's object, or a CSRF check failed.",
    "404": "No such object (or not yours).",
    "413": "Request body too large.",
    "429": "Too many requests: `Retry-After` says when to try again.",
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            public_operation = {} in operation.get("security", [{}])
            codes = ["400", "429"]
            if not public_operation:
                codes += ["401", "403"]
            if "{" in path:
                codes.append("404")
            if "requestBody" in operation:
                codes.append("413")
            for code in codes:
                operation["responses"].setdefault(code, {"description": ERRORS[code], "content": error})
    return result
