"""A terminal client for one user's live notifications (`python manage.py listen`).

It does what the browser's live.js does, with awsiotsdk/awscrt instead of MQTT.js: get short-lived
credentials, connect, subscribe (QoS 1) to the user's private topic and print one plain-text line
per message.

- Credentials come from a CredentialSource: IssuerSource calls the configured issuer directly
  (a process with Herald's settings and database), HttpSource asks a running Herald with a DRF
  token (`POST /api/notifications/credentials/`). Both can also list what was missed.
- Credentials expire: a minute before they do, the listener connects again with fresh ones and
  only then closes the old connection (make before break, so nothing falls in between). After a
  drop it reconnects with fresh credentials, backing off 1 s doubling to 30 s with jitter, and
  catches up on what it missed (`seq > last seen`). Notifications are keyed by id: never printed
  twice.
- Text from messages is untrusted: control characters (terminal escapes, bidi overrides, line
  breaks) are removed before anything is printed.

A failure raises ListenError, which says whether trying again can help: a refused token will be
refused forever (permanent), a throttle, a 503 or a network error may not.

awscrt and awsiot are imported only inside the functions that connect: they are development
requirements, and the web process never loads them.
"""
import json
import random
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from ..envelope import ENVELOPE_VERSION, notification_message

REFRESH_LEAD = 60.0  # reconnect this long before the credentials expire...
MIN_REFRESH_DELAY = 2.0  # ...but never sooner than this after connecting
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
CONNECT_TIMEOUT = 10.0  # CONNACK, SUBACK
DISCONNECT_TIMEOUT = 5.0
KEEP_ALIVE_SECS = 30
HTTP_TIMEOUT = 10.0
MAX_RETRY_AFTER = 3600.0
MAX_CATCH_UP_PAGES = 50
REMEMBERED_IDS = 10_000
MAX_FIELD_CHARS = 1000
POLL = 0.25  # how often the wait loop looks at a stop requested from a signal handler

CREDENTIALS_PATH = "/api/notifications/credentials/"
NOTIFICATIONS_PATH = "/api/notifications/"
# `?after_seq=` above any real seq: an empty page that still reports last_seq and unread_count.
NO_SEQ_ABOVE = 2**53 - 1


class ListenError(Exception):
    """Listening failed. `permanent`: retrying cannot help. `retry_after`: seconds the server asked for."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


# -- printing ---------------------------------------------------------------------------------------

_LINE_BREAKS = set("\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# Formatting characters that reorder or hide text on a terminal (bidi overrides, isolates, marks).
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean(value, limit: int = MAX_FIELD_CHARS) -> str:
    """Untrusted text as one safe line: no control characters, escapes, bidi overrides or breaks."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    out = []
    for ch in text:
        if ch in _LINE_BREAKS:
            out.append(" ")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs"):
            continue
        else:
            out.append(ch)
    result = "".join(out).strip()
    return result if len(result) <= limit else result[: limit - 1] + "…"


def _int(value) -> int | None:
    return value if type(value) is int else None


def _clock(iso: str | None = None) -> str:
    """HH:MM:SS in local time of an ISO-8601 timestamp (now when missing or unreadable)."""
    when = None
    if isinstance(iso, str):
        try:
            when = datetime.fromisoformat(iso)
        except ValueError:
            when = None
    if when is None:
        when = datetime.now(timezone.utc)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone().strftime("%H:%M:%S")


def format_message(message) -> str | None:
    """One plain-text line for a pushed message, or None for anything not understood.

    `12:03:04  #17 comment  bob: Bob commented on your post: “hi”  /posts/3/#comment-9  (unread 4)`
    (#17 is the notification id, as in `POST /api/notifications/17/read/`), and for a read-state
    change `12:03:09  read: unread 0`.
    """
    if not isinstance(message, dict) or _int(message.get("v")) != ENVELOPE_VERSION:
        return None
    unread = _int(message.get("unread_count"))
    unread_text = "?" if unread is None else str(unread)
    if message.get("type") == "notification":
        if _int(message.get("id")) is None or _int(message.get("seq")) is None:
            return None
        actor = message.get("actor") if isinstance(message.get("actor"), dict) else {}
        who = clean(actor.get("username"), 150) or clean(actor.get("display_name"), 150) or "someone"
        return (
            f"{_clock(message.get('created_at'))}  #{message['id']} {clean(message.get('kind'), 40)}  "
            f"{who}: {clean(message.get('text'))}  {clean(message.get('url'), 300)}  (unread {unread_text})"
        )
    if message.get("type") == "read":
        return f"{_clock()}  read: unread {unread_text}"
    return None


def refresh_delay(expires_at: str, *, lead: float = REFRESH_LEAD, minimum: float = MIN_REFRESH_DELAY,
                  now: float | None = None) -> float:
    """Seconds from now until fresh credentials should be fetched."""
    expires = _parse_expiry(expires_at)
    current = time.time() if now is None else now
    return max(minimum, expires - current - lead)


def _parse_expiry(expires_at) -> float:
    try:
        when = datetime.fromisoformat(expires_at)
    except (TypeError, ValueError):
        raise ListenError(f"The credentials carry no valid expires_at ({expires_at!r}).", permanent=True) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def check_credentials(creds) -> dict:
    """The credentials dict (contract: README "Credentials"), or a permanent ListenError."""
    if not isinstance(creds, dict):
        raise ListenError("The credentials are not a JSON object.", permanent=True)
    missing = [k for k in ("backend", "client_id", "topics", "expires_at") if not creds.get(k)]
    if not missing and not (isinstance(creds["topics"], dict) and creds["topics"].get("notifications")):
        missing.append("topics.notifications")
    if creds.get("backend") and creds["backend"] not in ("local", "aws"):
        raise ListenError(f"Unknown credentials backend {clean(creds.get('backend'), 40)!r}.", permanent=True)
    if not creds.get("url"):
        missing.append("url")
    if missing:
        raise ListenError(f"The credentials lack {', '.join(missing)}.", permanent=True)
    _parse_expiry(creds["expires_at"])
    return creds


# -- credential sources -----------------------------------------------------------------------------

class CredentialSource:
    """Where credentials (and missed notifications) come from. Methods raise ListenError."""

    label = "?"  # who is listening, for status lines

    def fetch(self) -> dict:
        """Fresh credentials (a new client id each time)."""
        raise NotImplementedError

    def last_seq(self) -> int:
        """The user's newest notification seq right now: where listening starts."""
        raise NotImplementedError

    def missed(self, after_seq: int) -> list[dict]:
        """Notifications with seq > after_seq, oldest first, shaped like pushed messages."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class IssuerSource(CredentialSource):
    """Credentials straight from notifier.aws.issuer (this process has Herald's settings and database)."""

    def __init__(self, user):
        self.user = user
        self.label = user.get_username()

    @classmethod
    def for_username(cls, username: str) -> "IssuerSource":
        from django.contrib.auth import get_user_model

        User = get_user_model()
        matches = list(User.objects.filter(**{f"{User.USERNAME_FIELD}__iexact": username})[:10])
        exact = [u for u in matches if u.get_username() == username]
        if exact:
            return cls(exact[0])
        if len(matches) == 1:
            return cls(matches[0])
        if not matches:
            raise ListenError(f"No user named {clean(username, 150)!r}.", permanent=True)
        raise ListenError(f"Several users match {clean(username, 150)!r}; give the exact spelling.", permanent=True)

    def fetch(self) -> dict:
        from django.db import DatabaseError

        from ..aws.issuer import CredentialsUnavailable
        from ..live_clients import vend

        try:
            return vend(self.user)
        except CredentialsUnavailable as exc:
            raise ListenError(f"Credentials are unavailable: {exc}") from exc
        except DatabaseError as exc:  # busy or gone for a moment (a lock, a restart): try again
            raise ListenError(f"The database did not answer: {str(exc)[:200]}") from exc

    def last_seq(self) -> int:
        from ..models import NotificationState

        return NotificationState.of(self.user).last_seq

    def missed(self, after_seq: int) -> list[dict]:
        from ..groups import attach_actors
        from ..models import Notification, NotificationState

        state = NotificationState.of(self.user)
        rows = (Notification.objects.for_user(self.user).filter(seq__gt=after_seq)
                .select_related("event__actor").order_by("seq"))
        return [notification_message(n, state.unread_count, state.unseen_count)
                for n in attach_actors(rows[: 100 * MAX_CATCH_UP_PAGES])]

    def close(self) -> None:
        from django.db import connections

        connections.close_all()  # this thread's connections only


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would resend the Authorization header to the new address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _retry_after(value) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


class HttpSource(CredentialSource):
    """Credentials from a running Herald, authenticated with a DRF token (`Authorization: Token …`)."""

    def __init__(self, base_url: str, token: str, *, label: str | None = None, timeout: float = HTTP_TIMEOUT):
        parts = urllib.parse.urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ListenError(f"--url must be an http:// or https:// address, not {base_url!r}.", permanent=True)
        if not token:
            raise ListenError("A DRF token is needed with --url (POST /api/token/ gives one).", permanent=True)
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.origin = (parts.scheme, parts.netloc)
        self.token = token
        self.timeout = timeout
        self.label = label or "token holder"
        self._opener = urllib.request.build_opener(_NoRedirects)

    def fetch(self) -> dict:
        return self._request("POST", self.base + CREDENTIALS_PATH)

    def last_seq(self) -> int:
        page = self._request("GET", f"{self.base}{NOTIFICATIONS_PATH}?after_seq={NO_SEQ_ABOVE}")
        return _int(page.get("last_seq")) or 0

    def missed(self, after_seq: int) -> list[dict]:
        messages: list[dict] = []
        url = f"{self.base}{NOTIFICATIONS_PATH}?after_seq={int(after_seq)}"
        for _ in range(MAX_CATCH_UP_PAGES):
            page = self._request("GET", url)
            results = page.get("results")
            if not isinstance(results, list):
                raise ListenError(f"{self.base}{NOTIFICATIONS_PATH} did not answer with a catch-up page.",
                                  permanent=True)
            unread = _int(page.get("unread_count"))
            for n in results:
                if isinstance(n, dict):
                    messages.append({
                        "v": ENVELOPE_VERSION, "type": "notification", "seq": n.get("seq"), "id": n.get("id"),
                        "kind": n.get("kind"), "actor": n.get("actor"), "text": n.get("text"),
                        "url": n.get("url"), "created_at": n.get("created_at"), "unread_count": unread,
                    })
            following = page.get("next")
            if not following:
                break
            url = urllib.parse.urljoin(url, following)
            parts = urllib.parse.urlsplit(url)
            if (parts.scheme, parts.netloc) != self.origin:  # never send the token elsewhere
                raise ListenError(f"The catch-up page points to another server ({parts.netloc}).")
        return messages

    def _request(self, method: str, url: str) -> dict:
        request = urllib.request.Request(
            url, data=b"" if method == "POST" else None, method=method,
            headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc, url) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ListenError(f"Could not reach {self.base}: {clean(str(reason), 200).rstrip('.')}.") from None
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ListenError(f"{url} did not answer with JSON: is --url a Herald server?", permanent=True) from None

    def _http_error(self, exc: urllib.error.HTTPError, url: str) -> ListenError:
        code = exc.code
        try:
            detail = clean(json.loads(exc.read().decode("utf-8")).get("detail"), 300)
        except Exception:
            detail = ""
        said = f": {detail}" if detail else ""
        retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        if code == 401:
            return ListenError(f"Herald refused the token (401{said}). Check --token.", permanent=True)
        if code == 403:
            return ListenError(f"Forbidden (403{said}).", permanent=True)
        if code == 404:
            return ListenError(f"Nothing at {url} (404): is --url a Herald server?", permanent=True)
        if code == 429:
            wait = f"; the server asks to wait {retry_after:.0f} s" if retry_after is not None else ""
            return ListenError(f"Too many credential requests (429{said}){wait}.", retry_after=retry_after)
        if code == 503:
            return ListenError(f"Herald cannot issue credentials right now (503{said}).", retry_after=retry_after)
        if 300 <= code < 400:
            where = clean(exc.headers.get("Location") if exc.headers else "", 300)
            return ListenError(f"{url} redirects ({code}) to {where or 'elsewhere'}: give that address with --url.",
                               permanent=True)
        return ListenError(f"{url} answered {code}{said}.", permanent=code < 500, retry_after=retry_after)


# -- connections ------------------------------------------------------------------------------------

def build_connection(creds: dict, **callbacks):
    """An awscrt MQTT connection (not yet connected) over the credentials' presigned URL.

    One path for AWS IoT Core (`wss://`, TLS) and the local emulator (`ws://`): the URL already
    carries the SigV4 signature and the session token, so the WebSocket handshake only has to ask
    for that path and query, exactly as a browser does. (awsiot's builders sign a handshake
    themselves and always make a TLS context, so the connection is built directly.)
    disable_metrics keeps awscrt from appending SDK metrics to the MQTT username.
    """
    from awscrt import io, mqtt

    url = urllib.parse.urlsplit(creds["url"])
    if url.scheme not in ("ws", "wss") or not url.hostname:
        raise ListenError(f"Unsupported credentials url {clean(creds['url'], 200)!r} (ws:// or wss://).",
                          permanent=True)
    secure = url.scheme == "wss"
    path = (url.path or "/mqtt") + (f"?{url.query}" if url.query else "")

    # The signature covers the Host header as the URL names it, port included; awscrt would send
    # the bare host name.
    host = url.netloc.rpartition("@")[2]

    def handshake(transform_args, **kwargs):
        try:
            transform_args.http_request.path = path
            transform_args.http_request.headers.set("Host", host)
        finally:
            transform_args.set_done()

    tls = io.ClientTlsContext(io.TlsContextOptions()) if secure else None
    client = mqtt.Client(io.ClientBootstrap.get_or_create_static_default(), tls)
    socket_options = io.SocketOptions()
    socket_options.connect_timeout_ms = int(CONNECT_TIMEOUT * 1000)
    return mqtt.Connection(
        client=client,
        host_name=url.hostname,
        port=url.port or (443 if secure else 80),
        client_id=creds["client_id"],
        clean_session=True,
        keep_alive_secs=KEEP_ALIVE_SECS,
        socket_options=socket_options,
        use_websockets=True,
        websocket_handshake_transform=handshake,
        disable_metrics=True,
        **callbacks,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
        return "no answer in time"
    name = getattr(exc, "name", None)  # AwsCrtError
    text = f"{name}: {getattr(exc, 'message', '')}" if name else str(exc) or type(exc).__name__
    return clean(text, 200).rstrip(" :.")


def _where(creds: dict) -> str:
    parts = urllib.parse.urlsplit(creds["url"])
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# -- the listener -----------------------------------------------------------------------------------

class Listener:
    """Prints one user's notifications until stopped, `count` notifications, or run()'s timeout.

        listener = Listener(IssuerSource.for_username("alice"), count=1)
        listener.run(timeout=30)    # blocks; returns how many notifications were printed

    stop() may be called from any thread; request_stop() only sets a flag (safe in a signal handler).
    `since`: print notifications after this seq first; by default listening starts from now.
    """

    refresh_lead = REFRESH_LEAD
    min_refresh = MIN_REFRESH_DELAY
    backoff_start = BACKOFF_START
    backoff_max = BACKOFF_MAX
    connect_timeout = CONNECT_TIMEOUT

    def __init__(self, source: CredentialSource, *, out=None, err=None, count: int | None = None,
                 since: int | None = None, verbosity: int = 1, build=None):
        if count is not None and count < 1:
            raise ValueError("count must be at least 1.")
        self.source = source
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.count = count
        self.verbosity = verbosity
        self._build = build or build_connection
        self._stopping = False
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._conn = None
        self._creds = None
        self._dropped = None
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._recent_reads: deque[tuple] = deque(maxlen=32)
        self._last_seq = since
        self._since = since
        self.printed = 0
        self.credentials_fetched = 0
        self.connections = 0  # successful connect + subscribe, first one and every refresh or reconnect
        self.live = threading.Event()  # set while subscribed
        self.interrupted = False  # stopped by Ctrl-C / SIGTERM (set by whoever handles the signal)

    # -- control --

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- the loop --

    def run(self, timeout: float | None = None) -> int:
        """Listen until stopped; returns the number of notifications printed. Raises permanent ListenErrors."""
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0  # consecutive failures (drops, refused connects)
        retry_at = 0.0
        refresh_at: float | None = None
        try:
            while not self._stopping:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                dropped, self._dropped = self._dropped, None
                if dropped is not None and dropped is self._conn:
                    self.live.clear()
                    self._conn = None
                    self._close(dropped, wait=False)
                    delay = self._backoff(attempt)
                    attempt += 1
                    retry_at, refresh_at = now + delay, None
                    self._status(f"connection lost; reconnecting in {delay:.1f} s")
                if self._conn is None and now >= retry_at:
                    delay = self._try_open(gap=True, attempt=attempt, failed="")
                    if delay is None:
                        attempt, refresh_at = 0, time.monotonic() + self._refresh_delay()
                    else:
                        attempt, retry_at = attempt + 1, time.monotonic() + delay
                elif self._conn is not None and refresh_at is not None and now >= refresh_at:
                    # Make before break: the old connection stays up until the new one is live.
                    delay = self._try_open(gap=False, attempt=attempt, failed="Refreshing credentials failed: ")
                    if delay is None:
                        attempt, refresh_at = 0, time.monotonic() + self._refresh_delay()
                    else:
                        attempt, refresh_at = attempt + 1, time.monotonic() + delay
                wake_at = retry_at if self._conn is None else refresh_at
                if deadline is not None:
                    wake_at = deadline if wake_at is None else min(wake_at, deadline)
                wait = POLL if wake_at is None else min(POLL, max(0.0, wake_at - time.monotonic()))
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            self._stopping = True
            self.live.clear()
            conn, self._conn = self._conn, None
            if conn is not None:
                self._close(conn, wait=True)
            self.source.close()
        return self.printed

    def _refresh_delay(self) -> float:
        return refresh_delay(self._creds["expires_at"], lead=self.refresh_lead, minimum=self.min_refresh)

    def _try_open(self, *, gap: bool, attempt: int, failed: str) -> float | None:
        """Open a fresh connection: None when it is live, else the wait before trying again.
        Errors that retrying cannot fix are raised."""
        try:
            self._open(gap=gap)
            return None
        except ListenError as exc:
            if exc.permanent:
                raise
            delay = max(self._backoff(attempt), exc.retry_after or 0.0)
            self._status(f"{failed}{exc} Retrying in {delay:.1f} s.")
            return delay

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_start * (2 ** min(attempt, 16)))
        return delay / 2 + random.random() * delay / 2

    def _open(self, *, gap: bool) -> None:
        """Fetch credentials, connect, subscribe; then retire the previous connection and catch up."""
        creds = check_credentials(self.source.fetch())
        self.credentials_fetched += 1
        where = _where(creds)
        try:
            conn = self._build(
                creds,
                on_connection_interrupted=self._on_interrupted,
                on_connection_failure=self._on_failure,
            )
        except ImportError as exc:
            raise ListenError(f"awsiotsdk is not installed ({exc}).", permanent=True) from None
        except (TypeError, ValueError, RuntimeError) as exc:  # awscrt refused the settings
            raise ListenError(f"Cannot set up a connection to {where}: {_describe(exc)}.", permanent=True) from None
        try:
            conn.connect().result(timeout=self.connect_timeout)
        except Exception as exc:
            self._close(conn, wait=False)
            raise ListenError(f"Could not connect to {where}: {_describe(exc)}.") from None
        from awscrt import mqtt

        topic = creds["topics"]["notifications"]
        try:
            future, _packet_id = conn.subscribe(topic, mqtt.QoS.AT_LEAST_ONCE, callback=self._on_message)
            future.result(timeout=self.connect_timeout)
        except Exception as exc:
            self._close(conn, wait=False)
            if isinstance(exc, mqtt.SubscribeError):
                raise ListenError(f"The broker refused the subscription to {topic}.") from None
            raise ListenError(f"Could not subscribe to {topic}: {_describe(exc)}.") from None
        previous, self._conn, self._creds = self._conn, conn, creds
        self.connections += 1
        until = _clock(creds["expires_at"])
        if previous is not None:
            self._close(previous, wait=True)
            self._status(f"fresh credentials: {creds['client_id']} (until {until})", level=2)
        if gap:
            self._catch_up()
            started = "listening as" if self.connections == 1 else "reconnected as"
            self._status(f"{started} {self.source.label} on {where}, topic {topic} (credentials until {until})")
        self.live.set()

    def _catch_up(self) -> None:
        """Print what was pushed while not connected (or, the first time, after `since`)."""
        try:
            if self._last_seq is None:
                current = self.source.last_seq()
                with self._lock:
                    if self._last_seq is None:
                        self._last_seq = current
                return
            for message in self.source.missed(self._last_seq):
                self._emit(message)
        except Exception as exc:  # the next reconnect tries again
            self._status(f"Catching up failed: {exc}")

    @staticmethod
    def _close(conn, *, wait: bool) -> None:
        try:
            future = conn.disconnect()
            if wait:
                future.result(timeout=DISCONNECT_TIMEOUT)
        except Exception:
            pass

    # -- callbacks (awscrt's threads) --

    def _on_interrupted(self, connection=None, error=None, **kwargs):
        if connection is self._conn:
            self._dropped = connection
            self._wake.set()

    def _on_failure(self, connection=None, callback_data=None, **kwargs):
        # A failed automatic reconnect of the current connection: replace it with fresh credentials.
        self._on_interrupted(connection=connection)

    def _on_message(self, topic=None, payload=b"", **kwargs):
        try:
            message = json.loads(bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._status(f"ignored a message on {topic} that is not UTF-8 JSON", level=2)
            return
        self._emit(message)

    # -- output --

    def _emit(self, message) -> None:
        line = format_message(message)
        if line is None:
            self._status("ignored a message of an unknown version or type", level=2)
            return
        with self._lock:
            if self._stopping:
                return
            if message["type"] == "notification":
                if message["id"] in self._seen:
                    return
                self._remember(message["id"])
                self._last_seq = max(self._last_seq or 0, message["seq"])
            else:
                ids = message.get("ids")
                key = (message.get("seq"), message.get("all"), tuple(ids) if isinstance(ids, list) else None,
                       message.get("unread_count"))
                if key in self._recent_reads:  # the same change seen on both connections of a refresh
                    return
                self._recent_reads.append(key)
            self._write(self.out, line)
            if message["type"] == "notification":
                self.printed += 1
                if self.count is not None and self.printed >= self.count:
                    self.stop()

    def _remember(self, notification_id: int) -> None:
        self._seen.add(notification_id)
        self._seen_order.append(notification_id)
        if len(self._seen_order) > REMEMBERED_IDS:
            self._seen.discard(self._seen_order.popleft())

    def _status(self, text: str, *, level: int = 1) -> None:
        if self.verbosity >= level:
            self._write(self.err, text)

    def _write(self, stream, line: str) -> None:
        try:
            try:
                stream.write(line + "\n")
            except UnicodeEncodeError:
                encoding = getattr(stream, "encoding", None) or "ascii"
                stream.write(line.encode(encoding, "replace").decode(encoding) + "\n")
            flush = getattr(stream, "flush", None)
            if flush:
                flush()
        except (BrokenPipeError, ValueError):  # the reader went away (`listen | head -1`), or closed stream
            self.stop()
