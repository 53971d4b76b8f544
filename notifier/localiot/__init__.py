"""Herald's local AWS IoT emulator: what `python manage.py runlocaliot` runs.

It stands in for AWS IoT Core on a laptop and in tests, speaking the two APIs Herald uses:

* MQTT 3.1.1 over TCP and over WebSocket (path ``/mqtt``, subprotocol ``mqtt``) for subscribers,
  authenticated with the signed, expiring token that the credential view issues
  (``tokens.issue_token``) and confined to the topic filters inside it;
* the iot-data ``Publish`` HTTP API (``POST /topics/{topic}?qos=N``), SigV4-signed, so the one
  boto3 publisher works unchanged against AWS and against this emulator.

Modules:
  tokens       pure token functions (no amqtt, no Django settings): the web process imports these
  topics       pure MQTT/AWS topic rules (matching, validation)
  sigv4        SigV4 verification of incoming HTTP requests, using botocore's own signer
  plugins      amqtt auth and topic plugins
  gate         limits in front of amqtt: connection cap, CONNECT deadline, packet size and framing
  broker       the amqtt Broker subclass that authenticates before touching sessions
  publish_api  the asyncio HTTP server for iot-data Publish
  server       LocalIoT, which puts the three listeners together

This package's ``__init__`` imports nothing on purpose: amqtt is a development dependency and must
never be imported by the web process, which only needs ``notifier.localiot.tokens``.
"""
