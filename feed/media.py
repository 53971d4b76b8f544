"""Pictures in storage: where avatars and post images go, their URLs, and when files are deleted.

Everything goes through Django's default storage (settings.STORAGES["default"]): the filesystem
under MEDIA_ROOT locally, S3 on Lambda (MEDIA_BUCKET). Names are new random ones for every
upload, never reused, so a URL always shows the picture it was made for and can be cached forever.

Files and rows move together:
- new files are written before the transaction that points a row at them; if that transaction
  fails, they are deleted at once (`cleanup_on_failure`);
- files a row stops pointing at (a replaced or removed avatar, a deleted post) are deleted only
  after the transaction commits (`delete_after_commit`), so a rollback leaves the row and its
  files as they were.

Uploads too large for API Gateway's payload limit (10 MB; phone photos come close) go straight
from the browser to S3 with a presigned POST (`presigned_upload`) under the user's own prefix;
`take_upload` then reads that object back, runs the same checks as a direct upload and deletes
it, whatever the outcome: it is never served.
"""
import contextlib
import secrets
from datetime import timedelta
from functools import partial

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from limits import counters

from . import images

UPLOAD_PREFIX = "uploads"
UPLOAD_EXPIRES = 300  # seconds a presigned POST may be used
UPLOAD_CLAIM_SECONDS = 3600  # how long a taken upload key stays taken: well past its POST's life
UPLOAD_CONTENT_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}


def _new_stem(kind: str, user_id: int) -> str:
    return f"{kind}/{user_id}/{secrets.token_urlsafe(12)}"


def url_of(name: str) -> str:
    return default_storage.url(name)


def avatar_names(stem: str) -> list[str]:
    return [f"{stem}-{px}.{images.OUTPUT_EXTENSION}" for px in images.AVATAR_SIZES.values()]


def avatar_urls(stem: str) -> dict | None:
    """{"small", "medium", "large"} URLs for an avatar stored under `stem`, or None for ""."""
    if not stem:
        return None
    return {size: url_of(f"{stem}-{px}.{images.OUTPUT_EXTENSION}") for size, px in images.AVATAR_SIZES.items()}


def _save(name: str, content: bytes) -> str:
    saved = default_storage.save(name, ContentFile(content))
    if saved != name:  # a random name taken already: never write over someone's file
        default_storage.delete(saved)
        raise RuntimeError(f"storage renamed {name!r} to {saved!r}")
    return saved


def delete_files(names) -> None:
    for name in names:
        if name:
            default_storage.delete(name)


def delete_after_commit(names) -> None:
    """Delete these files once the current transaction commits (at once outside one)."""
    names = [n for n in names if n]
    if names:
        transaction.on_commit(partial(delete_files, names))


@contextlib.contextmanager
def cleanup_on_failure(names):
    """Files just written for a write that is about to run: deleted if it raises."""
    try:
        yield
    except BaseException:
        delete_files(names)
        raise


def store_avatar(user_id: int, upload) -> str:
    """Check and process the upload (ImageRejected when it is refused, nothing stored), write its
    sizes and return their stem for User.avatar."""
    sized = images.avatar_images(upload)
    stem = _new_stem("avatars", user_id)
    written = []
    with cleanup_on_failure(written):
        for size, px in images.AVATAR_SIZES.items():
            written.append(_save(f"{stem}-{px}.{images.OUTPUT_EXTENSION}", sized[size].content))
    return stem


def store_post_image(user_id: int, upload) -> tuple[str, int, int]:
    """Check and process the upload (ImageRejected when refused, nothing stored); write it and
    return (name, width, height)."""
    encoded = images.post_image(upload)
    name = _save(f"{_new_stem('posts', user_id)}.{images.OUTPUT_EXTENSION}", encoded.content)
    return name, encoded.width, encoded.height


# --- uploads straight to S3 ----------------------------------------------------------------------

def direct_uploads_available() -> bool:
    """Whether the storage can vend presigned POSTs (S3; not the local filesystem)."""
    return bool(getattr(default_storage, "bucket_name", None)) and hasattr(default_storage, "connection")


def presigned_upload(user_id: int, content_type: str) -> dict:
    """A presigned POST for one picture of `content_type`, under the user's own prefix, at most
    images.MAX_BYTES, usable for UPLOAD_EXPIRES seconds. The browser POSTs the file to `url` with
    `fields` and then hands `key` to the API (`upload`)."""
    key = f"{UPLOAD_PREFIX}/{user_id}/{secrets.token_urlsafe(16)}"
    expires_at = (timezone.now() + timedelta(seconds=UPLOAD_EXPIRES)).replace(microsecond=0)  # not after S3's
    client = default_storage.connection.meta.client
    post = client.generate_presigned_post(
        Bucket=default_storage.bucket_name, Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, images.MAX_BYTES]],
        ExpiresIn=UPLOAD_EXPIRES,
    )
    return {"url": post["url"], "fields": post["fields"], "key": key, "expires_at": expires_at}


NOT_YOUR_UPLOAD = "That is not one of your uploads."  # the refusal of a key that fails the rule below


def upload_key_belongs_to(key: str, user_id: int) -> bool:
    prefix = f"{UPLOAD_PREFIX}/{user_id}/"
    rest = key[len(prefix):] if isinstance(key, str) and key.startswith(prefix) else ""
    return bool(rest) and "/" not in rest and ".." not in rest


@contextlib.contextmanager
def take_upload(key: str):
    """The uploaded object as a file to check and process; it is deleted afterwards whatever
    happens (a refused picture leaves nothing behind, an accepted one lives on as its
    re-encoded copy). ImageRejected when there is no such upload, or it is over the size limit.

    A key is taken once: two requests with it at once (a double submit, two tabs) would both read
    the object before either deleted it, and make two posts of one upload. The first to count it
    in the shared limit counters (limits.counters: atomic, committed at once, seen by every
    process) takes it; the other is refused, and the object is left to the one that took it."""
    if counters.hit(f"upload:{key}", UPLOAD_CLAIM_SECONDS).count > 1:
        raise images.ImageRejected("This upload was used already; upload the image again.")
    try:
        try:
            size = default_storage.size(key)
        except (FileNotFoundError, OSError):
            raise images.ImageRejected("There is no such upload (it may have expired); upload the image again.") from None
        except Exception as exc:  # botocore's ClientError (404) when the key is not in the bucket
            if _missing(exc):
                raise images.ImageRejected("There is no such upload (it may have expired); upload the image again.") from None
            raise
        if size > images.MAX_BYTES:
            raise images.ImageRejected(f"The image is larger than {images.MAX_BYTES // (1024 * 1024)} MB.")
        with default_storage.open(key, "rb") as fh:
            yield ContentFile(fh.read(), name=key)
    finally:
        default_storage.delete(key)


@contextlib.contextmanager
def picture(file, key: str = ""):
    """The picture a request brought, for the service that stores it: its uploaded `file`, or the
    object of its direct upload `key` (read back and deleted whatever happens, `take_upload`), or
    None. One path for the API and the pages, so a picture is checked the same way however it
    came; the caller turns ImageRejected into its own kind of error (a 400, a form error)."""
    if key:
        with take_upload(key) as upload:
            yield upload
    else:
        yield file


def _missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound")
