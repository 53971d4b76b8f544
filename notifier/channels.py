"""Where a notification reaches its recipient besides the inbox: the channels and who wants what.

Three channels: in-app (the inbox and the live toast), Web Push (a device's browser, no tab
needed) and the email digest. In-app is the kind's mute switch: a muted kind (or post) is stored
nowhere and sent nowhere, so Web Push and email only ever carry what the inbox has. Web Push and
email each keep the kinds a user turned *off* (comma-separated on the state row, like
`muted_kinds`), so a kind added later starts on with its channel default, and the set-based writes
can test a recipient with one LIKE on a row they already lock.
"""
from .models import Digest, Kind, NotificationState

WEB_PUSH, EMAIL = "web_push", "email"
CHANNELS = (WEB_PUSH, EMAIL)
# The state row's column holding each channel's turned-off kinds.
OFF_FIELD = {WEB_PUSH: "push_off", EMAIL: "email_off"}
# Off until a user turns them on: likes and new posts are too many for an email.
DEFAULT_OFF = {WEB_PUSH: "", EMAIL: ",".join([Kind.LIKE, Kind.NEW_POST])}
DIGESTS = Digest.values


def split(kinds: str) -> list[str]:
    return [k for k in kinds.split(",") if k]


def join(kinds) -> str:
    """Kinds in their declared order, unknown ones dropped: one spelling for one set."""
    wanted = set(kinds)
    return ",".join(k for k in Kind.values if k in wanted)


def kinds_on(state: NotificationState, channel: str) -> list[str]:
    """The kinds `channel` carries for this user: not muted, not turned off there."""
    off = set(state.muted_kind_list) | set(split(getattr(state, OFF_FIELD[channel])))
    return [k for k in Kind.values if k not in off]


def wants(state: NotificationState, kind: str, channel: str) -> bool:
    return kind in kinds_on(state, channel)


def off_for(channel: str, kinds_on_list) -> str:
    """The column value that leaves exactly `kinds_on_list` on for `channel`."""
    on = set(kinds_on_list)
    return join(k for k in Kind.values if k not in on)


def on_sql(channel: str, alias: str) -> str:
    """SQL on the state row `alias` that is true when the kind (one %s parameter) is on for
    `channel` (muting is checked separately, by the write that stores the notification)."""
    return f"(',' || {alias}.{OFF_FIELD[channel]} || ',') NOT LIKE ('%%,' || %s || ',%%')"
