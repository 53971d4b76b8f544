from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('notifier', '0009_inbox'),
    ]

    operations = [
        migrations.AlterField(
            model_name='notification',
            name='kind',
            field=models.CharField(choices=[('comment', 'Comments on posts you follow'), ('reply', 'Replies to your comments'), ('like', 'Likes of your posts'), ('follow', 'New followers'), ('mention', 'Mentions of you'), ('new_post', 'Posts from people you follow')], max_length=16),
        ),
    ]
