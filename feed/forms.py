"""HTML forms; text rules come from feed.text, the same ones the API applies."""
from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils.text import normalize_newlines

from .models import User
from .text import MAX_TEXT_LENGTH, clean_text


class TextField(forms.CharField):
    """A CharField whose line breaks are "\n" before any check: browsers send a textarea's
    newlines as CRLF but count them as one character for maxlength, so the server counts the
    same characters the browser did. Stripped by default (`strip=False` keeps the ends)."""

    def to_python(self, value):
        if isinstance(value, str):
            value = normalize_newlines(value)
        return super().to_python(value)


class _TextForm(forms.Form):
    what = "Text"
    text = TextField(
        strip=False, required=False,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": MAX_TEXT_LENGTH}),
    )

    def clean_text(self):
        return clean_text(self.cleaned_data.get("text"), what=self.what)


class PostForm(_TextForm):
    what = "Post"


class CommentForm(_TextForm):
    what = "Comment"
    # A reply: the comment replied to (feed.services.add_comment checks it is on the post).
    parent = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput,
                                error_messages={"invalid": "That is not a comment you can reply to."})


class SignupForm(UserCreationForm):
    class Meta:
        model = User
        fields = ["username", "display_name"]
        field_classes = {"display_name": TextField}

    def clean_username(self):
        username = self.cleaned_data["username"]
        if User.objects.named(username).exists():
            raise forms.ValidationError("That username is taken.")
        return username


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["display_name", "bio"]
        # A name of only spaces is stored empty (the username shows instead).
        field_classes = {"display_name": TextField, "bio": TextField}
        widgets = {"bio": forms.Textarea(attrs={"rows": 3})}
