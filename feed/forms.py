"""HTML forms; text rules come from feed.text, the same ones the API applies."""
from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils.text import normalize_newlines

from . import emails, media
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


class DirectUploadForm:
    """A form whose picture may also arrive as the key of a direct upload: with S3 storage, feed.js
    sends a chosen file from the browser straight to the bucket (POST /api/uploads/, a presigned
    POST), past API Gateway's payload limit, and the form carries only the key, in a hidden
    `upload` field. Without a bucket that field does not exist and the file goes with the form.

    The key is held to the API's rule (media.upload_key_belongs_to: one of the uploader's own) and
    read through the API's path (media.picture → take_upload: checked, processed, deleted); its
    refusals are errors of the visible picture field (`picture_field`), where the person looks."""

    picture_field = "image"

    def __init__(self, *args, uploader=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.uploader = uploader
        # Where feed.js asks for a presigned POST (templates: data-direct-upload), or False.
        self.direct_upload = uploader is not None and media.direct_uploads_available()
        if self.direct_upload:
            self.fields["upload"] = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)

    def clean(self):
        cleaned = super().clean()
        key = cleaned.get("upload")
        if key and not media.upload_key_belongs_to(key, self.uploader.pk):
            self.add_error(self.picture_field, media.NOT_YOUR_UPLOAD)
        elif key and cleaned.get(self.picture_field):
            self.add_error(self.picture_field, "The picture came twice (as a file and as an upload): choose it again.")
        return cleaned

    def has_picture(self) -> bool:
        return bool(self.cleaned_data.get(self.picture_field) or self.cleaned_data.get("upload"))

    def picture(self):
        """The chosen picture for the service that stores it (a context manager, media.picture)."""
        return media.picture(self.cleaned_data.get(self.picture_field), self.cleaned_data.get("upload", ""))


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


class PostForm(DirectUploadForm, _TextForm):
    what = "Post"
    image = PictureField(label="Picture", help_text="JPEG, PNG, WebP or GIF, up to 10 MB.")
    image_alt = TextField(
        label="Describe the picture", required=False, max_length=MAX_ALT_LENGTH,
        widget=forms.TextInput(attrs={"placeholder": "What the picture shows, for people who cannot see it"}),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("image_alt") and not self.has_picture():
            self.add_error("image_alt", "Alt text describes a picture: choose one to go with it.")
        return cleaned


class CommentForm(_TextForm):
    what = "Comment"
    # A reply: the comment replied to (feed.services.add_comment checks it is on the post).
    parent = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput,
                                error_messages={"invalid": "That is not a comment you can reply to."})


EMAIL_HELP = ("Optional. For a digest of what you missed and to reset a forgotten password; "
              "we send a link to confirm it is yours.")


def clean_email(form) -> str:
    """Django's email validation (EmailField), the domain lower-cased; empty stays empty."""
    return User.objects.normalize_email(form.cleaned_data.get("email") or "")


class SignupForm(UserCreationForm):
    class Meta:
        model = User
        fields = ["username", "display_name", "email"]
        field_classes = {"display_name": TextField}
        help_texts = {"email": EMAIL_HELP}
        labels = {"email": "Email address"}

    def clean_email(self):
        return clean_email(self)

    def clean_username(self):
        username = self.cleaned_data["username"]
        if User.objects.named(username).exists():
            raise forms.ValidationError("That username is taken.")
        return username


class ProfileForm(DirectUploadForm, forms.ModelForm):
    picture_field = "avatar_image"
    avatar_image = PictureField(label="Avatar", help_text="A picture of you: its centre square is used. "
                                "JPEG, PNG, WebP or GIF, up to 10 MB.")
    remove_avatar = forms.BooleanField(label="Remove my avatar (show my initial)", required=False)
    current_password = forms.CharField(
        label="Current password", required=False, strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Only to change your email address.",
    )

    field_order = ["display_name", "bio", "email", "current_password"]

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request  # a password check counts as a log-in attempt from its client
        # The address as stored (validation writes the form's into the instance, after clean()).
        self.stored_email, self.stored_verified = self.instance.email, self.instance.email_verified

    class Meta:
        model = User
        fields = ["display_name", "bio", "email"]
        # A name of only spaces is stored empty (the username shows instead).
        field_classes = {"display_name": TextField, "bio": TextField}
        widgets = {"bio": forms.Textarea(attrs={"rows": 3})}
        help_texts = {"email": EMAIL_HELP}
        labels = {"email": "Email address"}

    def clean_email(self):
        return clean_email(self)

    def clean(self):
        cleaned = super().clean()
        if "email" in cleaned:  # a valid address: does changing to it need (and have) the password?
            refused, _ = emails.change_refused(self.request, self.instance, cleaned["email"],
                                               cleaned.get("current_password", ""))
            if refused:
                self.add_error("current_password", refused)
        return cleaned
