"""`python manage.py vapid_keys`: a new VAPID key pair for Web Push, in the settings' forms.

Put both lines in the stage's remote_env JSON (on Lambda) or the environment. The private key is
the base64url raw 32-byte P-256 scalar; the public key the base64url uncompressed point that
browsers subscribe with. Changing the pair ends every existing subscription (browsers must
subscribe again with the new public key), so generate it once per deployment.
"""
import json

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Prints a new VAPID key pair (WEB_PUSH_VAPID_PRIVATE_KEY, WEB_PUSH_VAPID_PUBLIC_KEY) for Web Push."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print a JSON object (for a remote_env file)")

    def handle(self, *args, **options):
        from notifier.webpush.keys import generate

        keys = generate()
        values = {"WEB_PUSH_VAPID_PRIVATE_KEY": keys.private, "WEB_PUSH_VAPID_PUBLIC_KEY": keys.public}
        if options["json"]:
            self.stdout.write(json.dumps(values, indent=2))
        else:
            for name, value in values.items():
                self.stdout.write(f"{name}={value}")
