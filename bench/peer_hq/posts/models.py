"""Post- and comment-like objects for the peer's notifications to point at (target and action
object, through generic foreign keys), so its live lists resolve real rows as they would in a
site, where Herald's rows carry post_ref / comment_ref."""
from django.db import models


class Post(models.Model):
    text = models.CharField(max_length=100)

    def __str__(self):
        return self.text


class Comment(models.Model):
    text = models.CharField(max_length=100)

    def __str__(self):
        return self.text
