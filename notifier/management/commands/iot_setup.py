"""Create or update the IAM role the AWS credential view assumes; print the settings to use.

    python manage.py iot_setup [--principal ARN] [--role-name NAME] [--region R] [--prefix P]
    python manage.py iot_setup --dry-run [--account 123456789012] [--principal ARN]

Safe to run again: it changes only what differs and says so. The logic, and why each piece is what
it is, lives in notifier.aws.iot_setup; this command only maps options and errors.
"""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from notifier.aws import iot_setup


class Command(BaseCommand):
    help = (
        "Create or update (idempotently) the IAM role that Herald assumes to give browsers scoped AWS IoT "
        "keys, then print IOT_ROLE_ARN and IOT_DATA_ENDPOINT. --dry-run prints the documents without AWS."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--role-name",
            help="IAM role name [herald-iot-browser-<IOT_TOPIC_PREFIX with non-alphanumerics as '-'>]",
        )
        parser.add_argument(
            "--principal", metavar="ARN",
            help="who may assume the role, e.g. the Lambda execution role ARN "
                 "[the identity running this command; an assumed-role session becomes its role]",
        )
        parser.add_argument("--region", help="AWS region of the IoT endpoint and the ARNs [AWS_REGION]")
        parser.add_argument("--prefix", help="topic prefix the role is limited to [IOT_TOPIC_PREFIX]")
        parser.add_argument(
            "--account",
            help="12-digit account id to show with --dry-run (a real run checks it matches the credentials)",
        )
        parser.add_argument(
            "--dry-run", action="store_true",
            help="print the trust and inline policies that would be set, without calling AWS",
        )

    def handle(self, *args, **options):
        prefix = (options["prefix"] or settings.IOT_TOPIC_PREFIX).strip("/")
        region = options["region"] or settings.AWS_REGION
        role_name = options["role_name"] or iot_setup.default_role_name(prefix)
        common = {"role_name": role_name, "region": region, "prefix": prefix,
                      "account": options["account"], "principal": options["principal"]}
        try:
            if options["dry_run"]:
                for line in iot_setup.dry_run(**common):
                    self.stdout.write(line)
                return
            outcome = iot_setup.run(**common, say=self.stdout.write)
        except iot_setup.SetupError as exc:
            raise CommandError(str(exc)) from None
        for warning in outcome.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
