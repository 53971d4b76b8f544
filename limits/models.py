from django.db import models


class Counter(models.Model):
    """One fixed-window counter of the database store (limits.counters.DatabaseCounters).

    A row is reused when its window has ended (the next hit starts a new window at 1), and rows
    whose window ended long ago are pruned now and then, so the table holds about one row per key
    counted recently. Times are Unix seconds from the web processes' clocks.
    """

    key = models.CharField(max_length=200, primary_key=True)
    hits = models.IntegerField()
    window_ends = models.FloatField(db_index=True)

    class Meta:
        db_table = "limits_counter"

    def __str__(self):
        return f"{self.key}: {self.hits}"
