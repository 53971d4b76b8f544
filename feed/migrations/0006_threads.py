import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BATCH = 2000


def follow_existing(apps, schema_editor):
    """Before this, everyone who commented on a post was told of each later comment: they start
    out following those posts, so nobody stops hearing about a conversation they were in. (Authors
    follow their own posts without a row.)"""
    Comment, PostFollow = apps.get_model("feed", "Comment"), apps.get_model("feed", "PostFollow")
    commenters = (Comment.objects.order_by("post_id", "author_id").values_list("post_id", "author_id")
                  .distinct().iterator(chunk_size=BATCH))
    batch = []
    for post_id, user_id in commenters:
        batch.append(PostFollow(post_id=post_id, user_id=user_id, following=True))
        if len(batch) == BATCH:
            PostFollow.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    PostFollow.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('feed', '0005_images'),
    ]

    operations = [
        migrations.CreateModel(
            name='PostFollow',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('following', models.BooleanField(default=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.AddField(
            model_name='comment',
            name='edited_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='comment',
            name='parent',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='replies', to='feed.comment'),
        ),
        migrations.AddField(
            model_name='post',
            name='edited_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='comment',
            index=models.Index(condition=models.Q(('parent__isnull', False)), fields=['parent', 'id'], name='comment_parent_idx'),
        ),
        migrations.AddField(
            model_name='postfollow',
            name='post',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='follows', to='feed.post'),
        ),
        migrations.AddField(
            model_name='postfollow',
            name='user',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='post_follows', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddConstraint(
            model_name='postfollow',
            constraint=models.UniqueConstraint(fields=('post', 'user'), name='postfollow_once'),
        ),
        migrations.RunPython(follow_existing, migrations.RunPython.noop, elidable=True),
    ]
