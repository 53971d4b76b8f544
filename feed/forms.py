"""HTML forms; text rules come from feed.text, the same ones the API applies."""
from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import User
from .text import MAX_TEXT_LENGTH, clean_text


class _TextForm(forms.Form):
    what = "Text"
    text = forms.CharField(
        strip=False, required=False,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": MAX_TEXT_LENGTH}),
    )

    def clean_text(self):
        return clean_text(self.cleaned_data.get("text"), what=self.what)


class PostForm(_TextForm):
    what = "Post"


class CommentForm(_TextForm):
    what = "Comment"


class SignupForm(UserCreationForm):
    class Meta:
        model = User
        fields = ["username", "display_name"]

    def clean_username(self):
        username = self.cleaned_data["username"]
        if User.objects.named(username).exists():
            raise forms.ValidationError("That username is taken.")
        return username


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["display_name", "bio"]
        widgets = {"bio": forms.Textarea(attrs={"rows": 3})}
