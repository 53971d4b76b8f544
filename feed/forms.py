"""HTML forms; text rules come from feed.text, the same ones the API applies."""
from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils.text import normalize_newlines

from .models import User
from .text import MAX_ALT_LENGTH, MAX_TEXT_LENGTH, clean_text

PICTURE_TYPES = "image/jpeg,image/png,image/webp,image/gif"


class PictureField(forms.FileField):
    """A picture to upload. Only the file arrives here: feed.images checks and re-encodes it when
    the service stores it, and its refusal becomes this field's error (feed.views)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.FileInput(attrs={"accept": PICTURE_TYPES}))
        super().__init__(**kwargs)


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
    image = PictureField(label="Picture", help_text="JPEG, PNG, WebP or GIF, up to 10 MB.")
    image_alt = TextField(
        label="Describe the picture", required=False, max_length=MAX_ALT_LENGTH,
        widget=forms.TextInput(attrs={"placeholder": "What the picture shows, for people who cannot see it"}),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("image_alt") and not cleaned.get("image"):
            self.add_error("image_alt", "Alt text describes a picture: choose one to go with it.")
        return cleaned


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
    avatar_image = PictureField(label="Avatar", help_text="A picture of you: its centre square is used. "
                                "JPEG, PNG, WebP or GIF, up to 10 MB.")
    remove_avatar = forms.BooleanField(label="Remove my avatar (show my initial)", required=False)

    class Meta:
        model = User
        fields = ["display_name", "bio"]
        # A name of only spaces is stored empty (the username shows instead).
        field_classes = {"display_name": TextField, "bio": TextField}
        widgets = {"bio": forms.Textarea(attrs={"rows": 3})}
