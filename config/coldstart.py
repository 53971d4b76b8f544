"""Fewer garbage collections while a Lambda container starts.

A cold start is almost all imports and class creation (Django's apps and models, DRF's
serializers, Herald's views): hundreds of thousands of new objects, nearly none of them garbage.
With Python's default first-generation threshold (700 allocations) the cyclic collector runs
hundreds of times meanwhile, and its full collections walk everything created so far. Until the
first response has been sent the threshold is raised (collection still happens, less often); then
the defaults come back, and what start-up built, which lives as long as the container, is frozen
out of future collections (gc.freeze). About 10 % of a cold start (bench/cold_start.py). A
container that only ever runs scheduled events or tasks keeps the raised threshold, which still
collects, every 100,000 allocations. On Lambda only (config/settings.py): elsewhere processes
start once and stay up. The package's smoke run checks that the defaults are back.
"""
import gc

STARTUP_THRESHOLD = (100_000, 50, 100)


def collect_less_until_first_response() -> None:
    from django.core.signals import request_finished

    defaults = gc.get_threshold()
    gc.set_threshold(*STARTUP_THRESHOLD)

    def started(**kwargs):
        request_finished.disconnect(started)
        gc.freeze()
        gc.set_threshold(*defaults)

    request_finished.connect(started, weak=False)
