"""Everything AWS-specific, for production and for the local emulator alike (one path):

  clients    boto3 clients made once per process, the IoT data endpoint
  presign    the SigV4-presigned MQTT-over-WebSocket URL a browser connects with
  policies   the IAM policy documents: role, session, trust (plain Python, no SDK)
  issuer     STS AssumeRole with a session policy: the credentials a browser gets
  iot_setup  creates or updates the IAM role the issuer assumes

This ``__init__`` imports nothing, so settings can import ``policies`` without boto3.
"""
