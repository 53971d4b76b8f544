"""Retry pushes that did not go out (broker down, throttled), with exponential backoff, send the
Web Pushes that are due (notifier.webpush.delivery.sweep: first sends lost with their process,
retries after a 429 / 5xx), sweep
the task queue (notifier.taskqueue.sweep: tasks whose worker died, failed tasks worth another try),
and close live connections whose user's access ended but whose closing failed or was lost
(notifier.live_clients.sweep).

When pushes are owed but none is due yet, one of them is tried early (delivery.probe_owed): the
first that goes through means the broker is back, and every owed push is brought forward.

Runs once by default (the Zappa scheduled event calls it every minute); `--loop N` keeps running
and retries every N seconds, for a long-lived local process.
"""
import time

from django.core.management.base import BaseCommand

from notifier import delivery, live_clients, taskqueue
from notifier.webpush import delivery as web_push


class Command(BaseCommand):
    help = "Push notifications whose delivery is pending and due; mark permanent failures failed."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=500, help="rows claimed per batch [500]")
        parser.add_argument("--loop", type=float, default=0, metavar="SECONDS",
                            help="keep running, checking every SECONDS (default: run once)")

    def handle(self, *args, batch, loop, **options):
        while True:
            totals = self.run_once(batch)
            web = web_push.sweep(batch)
            swept = taskqueue.sweep()
            closed = live_clients.sweep()
            if options["verbosity"] > 0 and (not loop or any(totals.values()) or any(swept.values()) or closed
                                             or any(web.values())):
                web_text = (f"web push: delivered {web['delivered']}, still pending {web['pending']}, "
                            f"failed {web['failed']}, subscriptions gone {web['gone']}; ") if any(web.values()) else ""
                self.stdout.write(
                    f"delivered {totals['delivered']}, still pending {totals['pending']}, failed {totals['failed']}; "
                    f"{web_text}tasks queued again: {swept['stale']} stale, {swept['retried']} failed; "
                    f"re-invoked {swept['invoked']}; live connections closed: {closed}"
                )
            if not loop:
                return
            time.sleep(loop)

    def run_once(self, batch: int) -> dict[str, int]:
        totals = {"delivered": 0, "pending": 0, "failed": 0}
        probed = False
        while True:
            ids = delivery.claim_due(batch)
            if not ids and not probed:
                # Nothing due: one owed push tried early says whether the broker is back (and if
                # so brings the rest forward, for the next round of this loop).
                probed = True
                result = delivery.probe_owed()
                for key, value in result.items():
                    totals[key] += value
                if result["delivered"]:
                    continue
                return totals
            if not ids:
                return totals
            result = delivery.deliver(ids)
            for key, value in result.items():
                totals[key] += value
            if result["pending"]:  # the broker is still unhappy: leave the rest for next time
                return totals
