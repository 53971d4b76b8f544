"""Email: the digest of what a user missed (digests), its one-click unsubscribe (unsubscribe), and
what Amazon SES says came back (bounces). Sent with Django's email API only; the transport is
settings.EMAIL_BACKEND (console, file, SMTP, or SES through django-ses on Lambda)."""
