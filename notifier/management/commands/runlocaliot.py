"""`python manage.py runlocaliot`: the local AWS IoT emulator on the LOCALIOT_* settings.

The HTTP Publish API accepts the key pair from notifier.aws.local.root_credentials() (what the
local publisher signs with), MQTT clients need tokens signed with SECRET_KEY (what the credential
view issues). amqtt is imported only when the command runs: it is a development dependency.
"""
import asyncio
import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Runs the local AWS IoT emulator: MQTT over TCP and WebSocket, and the iot-data Publish HTTP API."

    def handle(self, *args, **options):
        try:
            from notifier.localiot.server import LocalIoT
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise CommandError(f"The emulator needs the development requirements (requirements-dev.txt): {exc}")
        from notifier.aws.local import root_credentials as local_credentials

        self._quiet_logs(options["verbosity"])
        access_key_id, secret_access_key = local_credentials()
        iot = LocalIoT(
            host=settings.LOCALIOT_HOST,
            mqtt_port=settings.LOCALIOT_MQTT_PORT,
            ws_port=settings.LOCALIOT_WS_PORT,
            http_port=settings.LOCALIOT_HTTP_PORT,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            token_key=settings.SECRET_KEY,
            connect_timeout=settings.LOCALIOT_CONNECT_TIMEOUT,
            max_connections=settings.LOCALIOT_MAX_CONNECTIONS,
            max_publish_rate=settings.LOCALIOT_PUBLISH_RATE or None,
        )
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
