"""MQTT topic rules shared by the emulator's MQTT and HTTP sides (pure functions, no amqtt).

Matching follows MQTT 3.1.1 section 4.7: ``+`` matches exactly one level (an empty level too),
``#`` matches the parent level and any number of levels below it, and a filter starting with a
wildcard never matches a topic starting with ``$``. Publish topics follow AWS IoT's limits, so a
publish that AWS would refuse is refused here too instead of working locally and failing in
production.
"""

# AWS IoT Core limits for topic names used in Publish.
MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7
# MQTT's own limit for any UTF-8 string field, filters included.
MAX_FILTER_BYTES = 65535


def has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def is_valid_filter(topic_filter: str) -> bool:
    """A well-formed MQTT topic filter: wildcards occupy whole levels and '#' only comes last."""
    if not isinstance(topic_filter, str) or not topic_filter or "\x00" in topic_filter:
        return False
    if len(topic_filter.encode("utf-8")) > MAX_FILTER_BYTES:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic: str, topic_filter: str) -> bool:
    """Whether a topic name (no wildcards) is matched by a topic filter."""
    if not topic or has_wildcard(topic) or not is_valid_filter(topic_filter):
        return False
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    topic_levels = topic.split("/")
    filter_levels = topic_filter.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # is_valid_filter() guarantees it is the last level
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(topic_levels) == len(filter_levels)


def filter_is_covered(requested: str, allowed: list[str]) -> bool:
    """Whether a SUBSCRIBE for `requested` stays inside the `allowed` filters.

    A filter without wildcards is a single topic, so it is covered when one allowed filter matches
    it (``herald/dev/posts/17/comments`` is inside ``herald/dev/posts/+/comments``). A filter with
    wildcards is covered only when it is literally one of the allowed filters: proving that every
    topic a wildcard filter can match is inside the allowed set is easy to get subtly wrong
    (``#`` also matches the parent level, ``+`` matches empty levels), and clients never need more.
    """
    if not is_valid_filter(requested):
        return False
    if has_wildcard(requested):
        return requested in allowed
    return any(topic_matches(requested, allowed_filter) for allowed_filter in allowed)


def publish_topic_error(topic: str) -> str | None:
    """Why AWS IoT would refuse to publish to this topic, or None if it is fine."""
    if not topic:
        return "Topic name must not be empty."
    if "\x00" in topic:
        return "Topic name must not contain the NUL character."
    if has_wildcard(topic):
        return "Topic name must not contain the wildcard characters '+' or '#'."
    if topic.startswith("$"):
        return "Topic names starting with '$' are reserved."
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"Topic name must be at most {MAX_TOPIC_BYTES} bytes."
    if topic.count("/") > MAX_TOPIC_SLASHES:
        return f"Topic name must have at most {MAX_TOPIC_SLASHES} forward slashes."
    return None
