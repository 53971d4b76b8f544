"""Pushing messages to MQTT topics: one home for delivery's transport, imports one way.

  publisher  one message to one topic (boto3 iot-data Publish), PublishError, get_publisher()
  gate       the publisher's process-wide concurrency, rate limit and breaker
  batch      many messages side by side through a publisher and its gate (publish_all)

publisher imports gate; batch imports both; nothing here imports back.
"""
