"""IAM policy evaluation for the emulator: judges each IoT request the way IAM and IoT Core do.

The emulator decides every MQTT CONNECT / SUBSCRIBE / RECEIVE / PUBLISH, every HTTP Publish,
DeleteConnection and sts:AssumeRole with `allowed(...)`, so a local run refuses exactly what AWS
would refuse. Pure standard library: no Django settings, no amqtt, no boto3.

The rules, as AWS documents them:

- Evaluation ("Policy evaluation logic"; "Session policies"): an explicit Deny in any policy wins;
  otherwise the request needs an Allow in EVERY policy given (role policy and session policy give
  the intersection of the two). No policy at all allows nothing.
- Actions match case-insensitively; resources case-sensitively. `*` is any run of characters and
  `?` exactly one, in both ("IAM JSON policy elements: Action / Resource"). In a resource ARN the
  wildcards work within a segment (the parts separated by the first five colons); the last segment
  takes the rest of the ARN, slashes and colons included.
- MQTT's `+` and `#` are literal characters in IoT policies ("Publish/Subscribe policy examples"):
  `topicfilter/a/+/b` names the filter `a/+/b` and nothing else.
- Policy variables ("IAM policy elements: Variables and tags"), only with Version 2012-10-17 (with
  2008-10-17, or no Version, `${...}` is literal text): `${iot:ClientId}` and other keys of the
  request context, `${key, 'default'}`, and `${*}`, `${?}`, `${$}` for a literal `*`, `?`, `$`.
  A substituted value is literal text, never a pattern. "If a variable that has no value in the
  authorization context is used as part of the Resource or NotResource element of a policy, the
  resource that includes a policy variable with no value will not match any resource."
- Condition is refused (MalformedPolicy) rather than ignored: ignoring it would change verdicts.

Matching never builds a regular expression from a policy: a pattern is split at its stars and the
pieces are placed left to right, so the work is at most len(text) x len(pattern), never exponential.
"""
import json
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

VERSIONS = ("2012-10-17", "2008-10-17")
_TOP_KEYS = {"Version", "Id", "Statement"}
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                   "Principal", "NotPrincipal", "Condition"}
# "service:Action" with wildcards, or "*". Service prefixes are letters, digits and hyphens.
_ACTION = re.compile(r"[A-Za-z0-9*?-]+:[A-Za-z0-9*?]+")
# Inside ${...}: a context key, optionally followed by ", 'default'".
_VARIABLE = re.compile(r"\s*([^\s,']+)\s*(?:,\s*'([^']*)'\s*)?")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}
IOT_KINDS = ("client", "topic", "topicfilter")

# Pattern items: a str is literal text; these two objects are the wildcards.
_STAR = object()
_ONE = object()


class MalformedPolicy(ValueError):
    """The document is not a policy IAM would accept; str(exc) says why (AWS-like message)."""


@dataclass(frozen=True)
class _Variable:
    name: str  # lower case: context keys are case-insensitive
    default: str | None


def _chunk_at(chunk: tuple, text: str, i: int) -> bool:
    """Whether a star-free piece (chars, None for '?') matches `text` at position i."""
    for k, c in enumerate(chunk):
        if c is not None and c != text[i + k]:
            return False
    return True


class _Glob:
    """A wildcard pattern split at its stars, matched by placing each piece leftmost in turn.

    Leftmost placement is enough for `*`-only patterns (any later fit could be moved left), so
    there is no backtracking: each piece is tried at most once per position of the text.
    """

    __slots__ = ("chunks",)

    def __init__(self, items):
        chunks = [[]]
        for item in items:
            if item is _STAR:
                chunks.append([])
            elif item is _ONE:
                chunks[-1].append(None)
            else:
                chunks[-1].extend(item)
        self.chunks = tuple(tuple(c) for c in chunks)

    def match(self, text: str) -> bool:
        chunks = self.chunks
        if len(chunks) == 1:
            return len(text) == len(chunks[0]) and _chunk_at(chunks[0], text, 0)
        head, tail = chunks[0], chunks[-1]
        end = len(text) - len(tail)
        if len(head) > end or not _chunk_at(head, text, 0) or not _chunk_at(tail, text, end):
            return False
        pos = len(head)
        for chunk in chunks[1:-1]:
            while not (pos + len(chunk) <= end and _chunk_at(chunk, text, pos)):
                pos += 1
                if pos + len(chunk) > end:
                    return False
            pos += len(chunk)
        return True


_SPECIAL = re.compile(r"[*?]|\$\{")


def _items(text: str, variables: bool, where: str) -> list:
    """Split policy text into literal runs, wildcards and (with `variables`) _Variable items.

    Jumps from one special character to the next (a policy is parsed at every AssumeRole, so this
    is on the credentials path): most resources have one or two."""
    items, literal, i = [], [], 0
    while True:
        found = _SPECIAL.search(text, i)
        if found is None:
            literal.append(text[i:])
            break
        start = found.start()
        literal.append(text[i:start])
        if found.group() == "${":
            close = text.find("}", start)
            if not variables or close < 0:
                literal.append("${")
                i = start + 2
                continue
            inner = text[start + 2:close]
            if inner in _ESCAPES:
                literal.append(_ESCAPES[inner])
            else:
                variable = _VARIABLE.fullmatch(inner)
                if not variable:
                    raise MalformedPolicy(f"Invalid policy variable ${{{inner}}} in {where}.")
                items.extend(["".join(literal), _Variable(variable[1].lower(), variable[2])])
                literal = []
            i = close + 1
            continue
        items.extend(["".join(literal), _STAR if found.group() == "*" else _ONE])
        literal = []
        i = start + 1
    items.append("".join(literal))
    return [item for item in items if item != ""]


def _split_arn(items: list) -> list[list] | None:
    """Cut pattern items at the first five literal colons: the six ARN segments, or None."""
    segments = [[]]
    for item in items:
        if isinstance(item, str) and len(segments) < 6:
            parts = item.split(":", 6 - len(segments))
            segments[-1].append(parts[0])
            segments.extend([p] for p in parts[1:])
        else:
            segments[-1].append(item)
    return segments if len(segments) == 6 else None


class _Resource:
    """One Resource/NotResource entry: "*", or six segment patterns (variables resolved late)."""

    __slots__ = ("text", "segments")

    def __init__(self, text: str, variables: bool):
        self.text = text
        if text == "*":
            self.segments = None
            return
        segments = _split_arn(_items(text, variables, f"resource {text}"))
        if segments is None or segments[0] != ["arn"]:
            raise MalformedPolicy(f'Resource {text} must be in ARN format or "*".')
        if any(isinstance(i, _Variable) for s in segments[:5] for i in s):
            raise MalformedPolicy(f"Resource {text}: policy variables are allowed only after the fifth colon.")
        self.segments = tuple(
            s if any(isinstance(i, _Variable) for i in s) else _Glob(s) for s in segments
        )

    def match(self, request_segments: list[str] | None, context: Mapping[str, str]) -> bool:
        if self.segments is None:
            return True
        if request_segments is None:
            return False
        for pattern, value in zip(self.segments, request_segments):
            if not isinstance(pattern, _Glob):
                pattern = _resolve(pattern, context)
                if pattern is None:  # a variable with no value: this entry matches nothing
                    return False
            if not pattern.match(value):
                return False
        return True


def _resolve(items: list, context: Mapping[str, str]) -> "_Glob | None":
    """Substitute variables as literal text; None if one has no value and no default."""
    out = []
    for item in items:
        if isinstance(item, _Variable):
            value = context.get(item.name, item.default)
            if value is None:
                return None
            out.append(str(value))  # a str item is literal: '*' in a client id stays a '*'
        else:
            out.append(item)
    return _Glob(out)


@dataclass(frozen=True)
class _Statement:
    allow: bool
    actions: tuple  # of _Glob over lower-case text
    not_action: bool
    resources: tuple  # of _Resource
    not_resource: bool

    def applies(self, action: str, segments, context) -> bool:
        if any(g.match(action) for g in self.actions) == self.not_action:
            return False
        return any(r.match(segments, context) for r in self.resources) != self.not_resource


@dataclass(frozen=True)
class Policy:
    """A parsed, validated policy: build it once with `parse`, evaluate it many times."""

    version: str | None
    statements: tuple

    def decision(self, action: str, resource: str, variables: Mapping[str, str] | None = None) -> str | None:
        """'Deny' (explicit), 'Allow', or None (no statement applies: an implicit deny)."""
        return self._decide(action.lower(), _request_segments(resource), _context(variables))

    def _decide(self, action, segments, context):
        verdict = None
        for statement in self.statements:
            if statement.applies(action, segments, context):
                if not statement.allow:
                    return "Deny"
                verdict = "Allow"
        return verdict


def _request_segments(resource: str) -> list[str] | None:
    parts = resource.split(":", 5)
    return parts if len(parts) == 6 else None


def _context(variables: Mapping[str, str] | None) -> dict:
    return {k.lower(): v for k, v in (variables or {}).items() if v is not None}


def _strings(statement: dict, key: str) -> list[str]:
    value = statement[key]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise MalformedPolicy(f"{key} must be a string or a non-empty list of strings.")
    return values


def _action_glob(action: str) -> _Glob:
    if action != "*" and not _ACTION.fullmatch(action):
        if action.count(":") > 1:
            raise MalformedPolicy(f"Actions/Condition can contain only one colon: {action!r}.")
        raise MalformedPolicy(f"Action {action!r} must be prefaced by a vendor, e.g. iot:Connect, or be \"*\".")
    return _Glob(_items(action.lower(), False, "action"))


def _statement(raw, variables: bool) -> _Statement:
    if not isinstance(raw, dict):
        raise MalformedPolicy("Each Statement must be a JSON object.")
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise MalformedPolicy(f"Statement has unknown element(s): {', '.join(sorted(unknown))}.")
    if "Principal" in raw or "NotPrincipal" in raw:
        raise MalformedPolicy("Policy document should not specify a principal.")
    if "Condition" in raw:
        raise MalformedPolicy(
            "Condition is not supported: the local IoT emulator does not evaluate condition keys, "
            "and ignoring a Condition would change the verdict. Remove it from the policy."
        )
    if "Sid" in raw and not isinstance(raw["Sid"], str):
        raise MalformedPolicy("Sid must be a string.")
    if raw.get("Effect") not in ("Allow", "Deny"):
        raise MalformedPolicy(f"Effect must be \"Allow\" or \"Deny\", not {raw.get('Effect')!r}.")
    for element, negated, noun in (("Action", "NotAction", "actions"), ("Resource", "NotResource", "resources")):
        if element in raw and negated in raw:
            raise MalformedPolicy(f"Policy statement must contain either {element} or {negated}, not both.")
        if element not in raw and negated not in raw:
            raise MalformedPolicy(f"Policy statement must contain {noun}.")
    action_key = "Action" if "Action" in raw else "NotAction"
    resource_key = "Resource" if "Resource" in raw else "NotResource"
    return _Statement(
        allow=raw["Effect"] == "Allow",
        actions=tuple(_action_glob(a) for a in _strings(raw, action_key)),
        not_action=action_key == "NotAction",
        resources=tuple(_Resource(r, variables) for r in _strings(raw, resource_key)),
        not_resource=resource_key == "NotResource",
    )


def parse(document: "str | dict") -> Policy:
    """Validate a policy the way IAM does and compile it; raise MalformedPolicy saying why not."""
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise MalformedPolicy(f"Syntax errors in policy: not valid JSON ({exc}).") from None
    if not isinstance(document, dict):
        raise MalformedPolicy("Syntax errors in policy: the document must be a JSON object.")
    unknown = set(document) - _TOP_KEYS
    if unknown:
        raise MalformedPolicy(f"Policy has unknown element(s): {', '.join(sorted(unknown))}.")
    version = document.get("Version")
    if version is not None and version not in VERSIONS:
        raise MalformedPolicy(f"Version must be \"2012-10-17\" (or \"2008-10-17\"), not {version!r}.")
    if "Statement" not in document:
        raise MalformedPolicy("Missing required field Statement.")
    raw = document["Statement"]
    raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list) or not raw:
        raise MalformedPolicy("Statement must be an object or a non-empty list of objects.")
    # Policy variables (and the ${*} escapes) exist only in the 2012-10-17 language.
    variables = version == "2012-10-17"
    return Policy(version=version, statements=tuple(_statement(s, variables) for s in raw))


def allowed(policies: Sequence[Policy], action: str, resource: str,
            variables: Mapping[str, str] | None = None) -> bool:
    """IAM's verdict for an intersection of policies (e.g. role policy and session policy).

    Any explicit Deny wins; otherwise every policy must allow. No policies allow nothing.
    """
    if not policies:
        return False
    action, segments, context = action.lower(), _request_segments(resource), _context(variables)
    decisions = [p._decide(action, segments, context) for p in policies]
    return "Deny" not in decisions and all(d == "Allow" for d in decisions)


def iot_resource(region: str, account: str, kind: str, name: str, partition: str = "aws") -> str:
    """The ARN IoT Core authorizes for a client id, topic or topic filter (name taken literally)."""
    if kind not in IOT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(IOT_KINDS)}, not {kind!r}")
    return f"arn:{partition}:iot:{region}:{account}:{kind}/{name}"
