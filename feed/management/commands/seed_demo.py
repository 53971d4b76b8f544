"""Demo data for a first look: a few people who follow each other, posts, comments and likes.

Idempotent: run it again and nothing is duplicated (users, follows, likes are unique; posts and
comments are matched by author and text). Goes through feed.services, so the demo notifications
are real ones.
"""
from django.core.management.base import BaseCommand
from django.db import transaction
from tqdm import tqdm

from feed import services
from feed.models import Comment, Post, User

DEMO_PASSWORD = "herald-demo-pass"

USERS = [
    ("alice", "Alice Archer", "Climbs things. Writes about serverless."),
    ("bob", "Bob Baker", "Bakes bread, ships Django."),
    ("carol", "Carol Chen", "Coffee, cameras, cloud."),
    ("dave", "Dave Diaz", "Here for the memes."),
]
FOLLOWS = [("alice", "bob"), ("bob", "alice"), ("carol", "alice"), ("carol", "bob"), ("dave", "alice"),
           ("alice", "carol"), ("bob", "carol")]
POSTS = [
    ("alice", "Hello Herald! Notifications that arrive before you finish reading this sentence."),
    ("bob", "Fresh sourdough today. @alice you have to try it."),
    ("carol", "Anyone else moving their side projects to Lambda? @bob @dave"),
    ("alice", "Pay per message, no socket server to babysit. That's the whole pitch."),
    ("dave", "First post. Be nice."),
]
COMMENTS = [
    (1, "bob", "Welcome aboard!"),
    (1, "carol", "Looks great @alice"),
    (2, "alice", "Saving me a slice, right?"),
    (3, "alice", "Moved two last month, no regrets."),
    (4, "dave", "Ok this is neat."),
]
LIKES = [(1, "bob"), (1, "carol"), (2, "alice"), (3, "alice"), (3, "bob"), (5, "alice")]


class Command(BaseCommand):
    help = "Load demo users (password: %s), follows, posts, comments and likes. Safe to run twice." % DEMO_PASSWORD

    def handle(self, *args, **options):
        steps = len(USERS) + len(FOLLOWS) + len(POSTS) + len(COMMENTS) + len(LIKES)
        with tqdm(total=steps, desc="demo data", unit="item", disable=options["verbosity"] == 0) as bar:
            users = {}
            for username, display_name, bio in USERS:
                user, created = User.objects.get_or_create(
                    username=username, defaults={"display_name": display_name, "bio": bio}
                )
                if created:
                    user.set_password(DEMO_PASSWORD)
                    user.save(update_fields=["password"])
                users[username] = user
                bar.update()
            for follower, followee in FOLLOWS:
                services.follow(users[follower], followee)
                bar.update()
            posts = []
            for author, text in POSTS:
                post = Post.objects.filter(author=users[author], text=text).first()
                posts.append(post or services.create_post(users[author], text))
                bar.update()
            for index, author, text in COMMENTS:
                post = posts[index - 1]
                with transaction.atomic():
                    if not Comment.objects.filter(post=post, author=users[author], text=text).exists():
                        services.add_comment(users[author], post.pk, text)
                bar.update()
            for index, username in LIKES:
                services.like(users[username], posts[index - 1].pk)
                bar.update()
        self.stdout.write(self.style.SUCCESS(
            f"Demo data ready. Log in as {', '.join(users)} with password {DEMO_PASSWORD!r}."
        ))
