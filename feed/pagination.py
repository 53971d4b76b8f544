"""Keyset pagination for HTML pages: `?before=<id>`, no OFFSET, the same cost on page 1 and 1,000."""
PAGE_SIZE = 20


class KeysetPage:
    def __init__(self, items: list, next_before: int | None):
        self.items = items
        self.next_before = next_before

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)


def keyset_page(queryset, before: str | None, size: int = PAGE_SIZE) -> KeysetPage:
    """Items of queryset (ordered by -id) older than `before`; malformed `before` means page one."""
    try:
        cursor = int(before) if before else None
    except ValueError:
        cursor = None
    if cursor is not None:
        queryset = queryset.filter(pk__lt=cursor)
    items = list(queryset.order_by("-id")[: size + 1])
    more = len(items) > size
    items = items[:size]
    return KeysetPage(items, items[-1].pk if more else None)
