"""Rebuild stored follower counts (feed.models.UserStats) from the follows as they are.

Follows made by feed.services keep counts exact by themselves; run this after loading follows in
bulk (SQL, bulk_create, a restore), or with --check to see whether any count is off without
changing it. Best run at a quiet moment: it does not lock out concurrent follows.
"""
from django.core.management.base import BaseCommand, CommandError

from feed import counters
from feed.models import User


class Command(BaseCommand):
    help = "Rebuild stored follower counts from the follows (all users, or those named)."

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="*", help="only these users (default: everyone)")
        parser.add_argument("--check", action="store_true", help="report counts that are off; change nothing")

    def handle(self, *args, usernames=(), check=False, **options):
        ids = None
        if usernames:
            found = dict(User.objects.filter(username__in=usernames).values_list("username", "pk"))
            missing = sorted(set(usernames) - set(found))
            if missing:
                raise CommandError(f"No such user: {', '.join(missing)}")
            ids = list(found.values())
        wrong = counters.wrong_counts(ids)
        if check:
            for user_id, stored, actual in wrong:
                self.stdout.write(f"user {user_id}: stored {stored}, actual {actual}")
            self.stdout.write(f"{len(wrong)} count(s) off.")
            if wrong:
                raise CommandError("Follower counts are off: run recount_followers without --check.")
            return
        counters.recount(ids)
        self.stdout.write(f"Recounted; {len(wrong)} count(s) were off.")
