"""`python manage.py listen USERNAME`: a user's notifications in the terminal, live.

Two ways to get the credentials (see notifier.cli.listener):

    python manage.py listen alice                      # through the issuer, like the credential view
    python manage.py listen --url http://127.0.0.1:8000 --token <DRF token> [alice]

With --url the token decides whose notifications arrive; USERNAME is optional and only names the
listener in status lines (the API does not say whose a token is, so it is not checked). The token
may also come from the HERALD_TOKEN environment variable, which keeps it out of the process list.

Notification lines go to stdout, status lines (connected, refreshed, reconnecting) to stderr.
Ctrl-C or SIGTERM disconnects and exits with status 0; a second Ctrl-C exits at once.
"""
import importlib.util
import os
import signal
import threading
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from notifier.cli.listener import HttpSource, IssuerSource, Listener, ListenError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Command(BaseCommand):
    help = "Subscribes with a user's short-lived credentials (awsiotsdk) and prints their notifications as they arrive."

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?", help="whose notifications (optional with --url: display only)")
        parser.add_argument("--url", help="a running Herald, e.g. http://127.0.0.1:8000: get credentials from its API")
        parser.add_argument("--token", help="DRF token for --url (default: $HERALD_TOKEN)")
        parser.add_argument("--once", action="store_true", help="exit after the first notification")
        parser.add_argument("--count", type=int, metavar="N", help="exit after N notifications")
        parser.add_argument("--timeout", type=float, metavar="SECONDS",
                            help="stop after SECONDS; with --once/--count, not getting them all in time is an error")
        parser.add_argument("--since", type=int, metavar="SEQ",
                            help="first print the notifications after SEQ (0: all); default: only new ones")

    def handle(self, *args, username=None, url=None, token=None, once=False, count=None, timeout=None,
               since=None, **options):
        if once:
            if count not in (None, 1):
                raise CommandError("--once and --count disagree.")
            count = 1
        if count is not None and count < 1:
            raise CommandError("--count must be at least 1.")
        if timeout is not None and timeout <= 0:
            raise CommandError("--timeout must be positive.")
        if since is not None and since < 0:
            raise CommandError("--since must be 0 or more.")
        missing = [name for name in ("awscrt", "awsiot") if importlib.util.find_spec(name) is None]
        if missing:  # development requirements, imported only once connecting
            raise CommandError(f"listen needs awsiotsdk (requirements-dev.txt); missing: {', '.join(missing)}.")

        try:
            if url:
                source = HttpSource(url, token or os.environ.get("HERALD_TOKEN", ""), label=username)
            elif username:
                source = IssuerSource.for_username(username)
            else:
                raise CommandError("Give a USERNAME, or --url and --token of a running Herald.")
        except ListenError as exc:
            raise CommandError(str(exc)) from None

        verbosity = options.get("verbosity", 1)
        if url and urlsplit(url).scheme == "http" and urlsplit(url).hostname not in LOOPBACK:
            self.stderr.write("Warning: the token travels unencrypted over http://; prefer https://.")
        listener = Listener(source, out=self.stdout, err=self.stderr, count=count, since=since, verbosity=verbosity)
        restore = self._handle_signals(listener)
        try:
            printed = listener.run(timeout=timeout)
        except ListenError as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:  # the second Ctrl-C: run() has already disconnected
            return
        finally:
            restore()
        if count is not None and printed < count and timeout is not None and not listener.interrupted:
            raise CommandError(f"Timed out after {timeout:g} s with {printed} of {count} notification(s).")

    def _handle_signals(self, listener):
        """Ctrl-C / SIGTERM stop the listener cleanly (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def stop(signum, frame):
            if listener.stopping:
                raise KeyboardInterrupt
            listener.interrupted = True
            listener.request_stop()  # only a flag: no locks in a signal handler

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore():
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
