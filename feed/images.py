"""Turning an uploaded file into the pictures Herald stores: avatars and post images.

Every picture is decoded and encoded again from its pixels (never copied), so nothing the sender
put in the file survives: no EXIF (a phone photo's GPS position), no comments, no second payload
hidden behind the image data. The orientation EXIF asks for is applied to the pixels first, so a
portrait photo stays upright without its tag.

What is refused, before anything is stored: a file over MAX_BYTES, anything Pillow does not read
as JPEG, PNG, WebP or GIF, a header claiming more than MAX_PIXELS (checked before decoding, so a
"decompression bomb" — a few kilobytes that would unpack into gigabytes — never unpacks), and a
truncated or corrupt file. The message of ImageRejected names the problem for the person.

Pillow is imported inside the functions: a page or API call without a picture never loads it
(tests/test_web_path.py).
"""
import io
import warnings
from dataclasses import dataclass

MAX_BYTES = 10 * 1024 * 1024  # 10 MiB: a phone photo is 2–6
MAX_PIXELS = 40_000_000  # 40 megapixels: more than any phone camera, a tenth of a bomb's
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}
POST_MAX_SIDE = 1600  # px on the long side
AVATAR_SIZES = {"small": 48, "medium": 96, "large": 256}  # square, px
OUTPUT_FORMAT, OUTPUT_EXTENSION, OUTPUT_CONTENT_TYPE = "WEBP", "webp", "image/webp"
QUALITY = 85


class ImageRejected(ValueError):
    """An upload that is not a picture Herald takes; the message says why, for the person."""


@dataclass(frozen=True)
class Encoded:
    """A picture ready to store: WebP bytes and its size in pixels."""

    content: bytes
    width: int
    height: int


def _size_of(upload) -> int:
    size = getattr(upload, "size", None)
    if size is None:
        upload.seek(0, io.SEEK_END)
        size = upload.tell()
    return size


def open_image(upload):
    """The upload's first frame, decoded, upright, in RGB or RGBA; ImageRejected when it is not a
    picture Herald takes. `upload` is any binary file object (an UploadedFile, an S3 body read
    into memory, a BytesIO)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if _size_of(upload) > MAX_BYTES:
        raise ImageRejected(f"The image is larger than {MAX_BYTES // (1024 * 1024)} MB.")
    upload.seek(0)
    bomb = "The image is too large to open (its header claims more pixels than it could hold)."
    with warnings.catch_warnings():
        # Pillow warns past Image.MAX_IMAGE_PIXELS and raises past twice that; both are refusals.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(upload, formats=sorted(ACCEPTED_FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected(bomb) from None
        except UnidentifiedImageError:
            raise ImageRejected("The file is not an image Herald accepts (JPEG, PNG, WebP or GIF).") from None
        except (OSError, SyntaxError, ValueError):
            raise ImageRejected("The image is damaged and cannot be read.") from None
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageRejected("The image is damaged and cannot be read.")
        if width * height > MAX_PIXELS:
            raise ImageRejected(f"The image has more than {MAX_PIXELS // 1_000_000} megapixels.")
        try:
            image.seek(0)  # an animated GIF or WebP: its first frame
            image.load()  # every byte decoded now: a truncated file fails here, not later
            image = ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected(bomb) from None
        except (OSError, SyntaxError, ValueError, EOFError):
            raise ImageRejected("The image is damaged or cut short and cannot be read.") from None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    return image.convert("RGBA" if has_alpha else "RGB")


def encode(image) -> Encoded:
    """WebP from the pixels alone: no EXIF, ICC or XMP is passed on."""
    out = io.BytesIO()
    image.save(out, OUTPUT_FORMAT, quality=QUALITY, method=4)
    return Encoded(out.getvalue(), image.width, image.height)


def post_image(upload) -> Encoded:
    """A post's picture: at most POST_MAX_SIDE on its long side (never enlarged)."""
    from PIL import Image

    image = open_image(upload)
    if max(image.size) > POST_MAX_SIDE:
        image.thumbnail((POST_MAX_SIDE, POST_MAX_SIDE), Image.Resampling.LANCZOS)
    return encode(image)


def avatar_images(upload) -> dict[str, Encoded]:
    """An avatar: the centre square of the picture, at each of AVATAR_SIZES (a smaller picture is
    enlarged: every size is what pages lay it out as)."""
    from PIL import Image, ImageOps

    image = open_image(upload)
    side = min(image.size)
    square = ImageOps.fit(image, (side, side), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return {name: encode(square if px == side else square.resize((px, px), Image.Resampling.LANCZOS))
            for name, px in AVATAR_SIZES.items()}
