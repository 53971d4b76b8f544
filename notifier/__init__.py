"""Notifications: store them, count them exactly, and push them to the recipient's private topic.

The rest of the project talks to this app through one entry point, `notifier.notify(...)` (see
notifier.services.notify). notifier never imports feed: feed decides who is told what.
"""


def notify(kind, recipients, **kwargs):
    """Store one notification per recipient and push each after commit; see services.notify."""
    from .services import notify as _notify

    return _notify(kind, recipients, **kwargs)


def withdraw(**kwargs):
    """Remove notifications about deleted objects, keeping unread counts exact; see services.withdraw."""
    from .services import withdraw as _withdraw

    return _withdraw(**kwargs)
