"""Shared, atomic counters for the limits Herald keeps (failed log-ins, API throttles).

Every process (each gunicorn worker, each warm Lambda container) counts in the same place, so a
limit holds however many processes serve the requests. See limits.counters.
"""
