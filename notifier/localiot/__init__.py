"""Herald's local AWS IoT emulator: what `python manage.py runlocaliot` runs.

It stands in for one AWS account's IoT Core and STS on a laptop and in tests, so Herald's one
production credential path (STS AssumeRole with a session policy, a SigV4-presigned WebSocket URL,
IoT Core judging role policy AND session policy) runs unchanged against it:

* STS AssumeRole over AWS's query protocol (`POST /` on the HTTP port), signed with the account's
  root keys; it issues ASIA… keys whose session token carries the session, so they stay valid
  across a restart with the same root keys;
* MQTT 3.1.1 over WebSocket (path ``/mqtt``, subprotocol ``mqtt``) authenticated by the
  SigV4-presigned URL itself, as IoT Core does, and over TCP with that URL as the CONNECT password
  (where AWS would use X.509 certificates: one credential for every kind of client);
* IoT Core's policy checks: iot:Connect on the client id, iot:Subscribe per filter (SUBACK 0x80),
  iot:Receive per message (silently dropped), iot:Publish from a client (disconnected);
* the iot-data HTTP API Herald's server uses, `Publish` and `DeleteConnection`, SigV4-signed and
  judged against the signer's policy (the stage's Lambda permissions for the root keys).

Modules:
  policy       the IAM policy evaluator (parse like IAM, Deny wins, intersection of policies)
  sessions     stateless temporary credentials: issue and open session tokens
  accounts     identities: root keys and their policy, STS sessions and theirs; key resolution
  sigv4        SigV4 verification (Authorization header and presigned URL) with botocore's signer
  sts          AssumeRole: validation, authorisation, AWS's XML answers and error codes
  config       LocalIoT's arguments from Django settings and zappa_settings.json
  topics       pure MQTT/AWS topic rules (matching, validation)
  plugins      amqtt topic and auth plugins: the per-connection Grant and its policy checks
  gate         limits in front of amqtt: connection cap, CONNECT deadline, packet size and framing;
               both connection caps and the descriptors they need
  broker       the amqtt Broker subclass: SigV4 at the upgrade or CONNECT, iot:Connect before
               any session is touched, DeleteConnection
  publish_api  the asyncio HTTP server: iot-data Publish and DeleteConnection, and STS; at its
               connection cap it closes the longest-idle keep-alive connection, or answers 503
  server       LocalIoT, which puts the three listeners together

This package's ``__init__`` imports nothing on purpose: amqtt is a development dependency. policy,
sessions, accounts, sigv4, sts and config import no amqtt; the web process imports none of this
package (it talks to the emulator over HTTP with boto3, exactly as to AWS).
"""
