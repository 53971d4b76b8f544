"""`python manage.py runlocaliot`: the local AWS IoT emulator (IoT Core + STS) on the LOCALIOT_* settings.

The emulator plays one AWS account (notifier.localiot.config.options_from_settings): the root key
pair from notifier.aws.local.root_credentials() (what the local publisher and credential issuer
sign with) carries the stage's Lambda permissions from zappa_settings.json (`--stage`, default
dev), and STS hands out sessions of the browser role with policies.role_policy(). Browsers and
the `listen` command connect with presigned URLs made from those sessions, exactly as on AWS.
amqtt is imported only when the command runs: it is a development dependency.
"""
import asyncio
import logging
import signal

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Runs the local AWS IoT emulator: MQTT over TCP and WebSocket (SigV4-presigned URLs), the iot-data "
        "Publish and DeleteConnection HTTP API, and STS AssumeRole."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--stage", default=None,
            help="zappa_settings.json stage whose extra_permissions are the server's IAM policy (default: dev).",
        )

    def handle(self, *args, **options):
        try:
            from notifier.localiot.server import LocalIoT
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise CommandError(f"The emulator needs the development requirements (requirements-dev.txt): {exc}")
        from notifier.localiot.config import options_from_settings

        self._quiet_logs(options["verbosity"])
        try:
            iot = LocalIoT(**options_from_settings(options["stage"]))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        asyncio.run(self._serve(iot))

    @staticmethod
    def _quiet_logs(verbosity: int) -> None:
        """One line on start, then only problems: -v 2 shows refusals, -v 3 the libraries' chatter."""
        levels = {
            "notifier.localiot": logging.INFO if verbosity >= 2 else logging.WARNING,
            # amqtt logs each refused or dropped client as a warning or an error (a port probe is an
            # error); transitions logs every state change. Startup failures reach the console anyway,
            # as this command's own error.
            "amqtt": logging.DEBUG if verbosity >= 3 else logging.WARNING if verbosity == 2 else logging.CRITICAL,
            "transitions": logging.DEBUG if verbosity >= 3 else logging.WARNING,
            "websockets": logging.DEBUG if verbosity >= 3 else logging.WARNING,
        }
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

    async def _serve(self, iot) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await iot.start()
        except Exception as exc:  # a port in use, mostly: say so instead of a traceback
            raise CommandError(f"Could not start the local IoT emulator: {exc}") from exc
        try:
            self.stdout.write(
                f"Local IoT emulator: MQTT {iot.mqtt_url}  WebSocket {iot.ws_url}  HTTP {iot.http_url}  (Ctrl-C to stop)"
            )
            self.stdout.flush()
            await stop.wait()
        finally:
            await iot.stop()
