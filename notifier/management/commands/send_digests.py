"""Plan the email digests of the current window: one background task per DIGEST_BATCH_SIZE users
due one (notifier.mail.digests). Run it every hour for hourly digests and once a day for daily
ones (the Zappa cron events do); running it again within a window sends nothing twice.
"""
from django.core.management.base import BaseCommand

from notifier.mail import digests


class Command(BaseCommand):
    help = "Send the email digests due in the current window (hourly, daily, or both), in background batches."

    def add_arguments(self, parser):
        parser.add_argument("--window", choices=digests.CADENCES, action="append",
                            help="which digests: hourly or daily (repeatable; default: both)")

    def handle(self, *args, window, **options):
        for cadence in window or digests.CADENCES:
            start, batches = digests.plan(cadence)
            if options["verbosity"] > 0:
                self.stdout.write(f"{cadence} digests for the window from {start:%Y-%m-%d %H:%M} UTC: "
                                  f"{batches} batch{'es' if batches != 1 else ''} queued")
        pruned = digests.prune()
        if pruned and options["verbosity"] > 0:
            self.stdout.write(f"old digest records pruned: {pruned}")
