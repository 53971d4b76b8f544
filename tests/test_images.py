"""feed.images: what is stored is re-encoded from pixels (no EXIF, upright, resized, centre-cropped
avatars), and what is not a picture Herald takes is refused with a sentence, before decoding."""
import io

import pytest

from feed import images
from feed.images import ImageRejected

from .pictures import (
    GPS_LATITUDE,
    animated_gif,
    decoded,
    halves,
    jpeg_with_gps_and_orientation,
    picture,
    png_claiming,
    upload,
)


def test_a_phone_photo_loses_its_exif_and_gps_but_stays_upright():
    original = jpeg_with_gps_and_orientation(200, 100, orientation=6)
    source = decoded(original)
    from PIL import ExifTags

    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] == GPS_LATITUDE  # it is there
    assert source.size == (200, 100)

    stored = images.post_image(upload(original, "photo.jpg", "image/jpeg"))
    result = decoded(stored.content)
    assert result.format == "WEBP"
    assert (stored.width, stored.height) == result.size == (100, 200)  # turned as the tag said
    assert len(result.getexif()) == 0
    assert "exif" not in result.info and "xmp" not in result.info
    for marker in (b"Exif", b"HeraldPhone", b"GPS"):
        assert marker not in stored.content


def test_post_pictures_are_at_most_1600_pixels_on_the_long_side_and_never_enlarged():
    big = images.post_image(upload(picture(3200, 1000)))
    assert (big.width, big.height) == decoded(big.content).size == (1600, 500)
    tall = images.post_image(upload(picture(900, 4000, fmt="JPEG"), "tall.jpg"))
    assert (tall.width, tall.height) == (360, 1600)
    small = images.post_image(upload(picture(800, 600)))
    assert (small.width, small.height) == (800, 600)


def test_an_avatar_is_the_centre_square_at_three_sizes():
    # 300 × 100: red left half, blue right half; the centre square is 100..200, half of each.
    sized = images.avatar_images(upload(halves(300, 100)))
    assert {name: decoded(e.content).size for name, e in sized.items()} == {
        "small": (48, 48), "medium": (96, 96), "large": (256, 256)}
    large = decoded(sized["large"].content).convert("RGB")
    left, right = large.getpixel((10, 128)), large.getpixel((245, 128))
    assert left[0] > 200 and left[2] < 60  # red on the left of the square
    assert right[2] > 200 and right[0] < 60  # blue on the right: cut from the middle, not a side


def test_a_gif_keeps_its_first_frame_and_a_png_its_transparency():
    first = decoded(images.post_image(upload(animated_gif(), "a.gif", "image/gif")).content).convert("RGB")
    red = first.getpixel((5, 5))
    assert red[0] > 200 and red[2] < 60

    from PIL import Image

    clear = io.BytesIO()
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(clear, "PNG")
    assert decoded(images.post_image(upload(clear.getvalue())).content).mode == "RGBA"


@pytest.mark.parametrize("content,message", [
    (png_claiming(64, 48), "damaged"),  # a sound header over too little data
    (b"%PDF-1.4 not a picture at all", "not an image"),
    (b"", "not an image"),
    (picture(fmt="BMP"), "not an image"),  # a picture, but not one of the four formats
    (picture(fmt="TIFF"), "not an image"),
    (picture(300, 300, fmt="JPEG")[:400], "damaged"),  # cut short: the header is fine, the data is not
    (png_claiming(100_000, 100_000), "too large to open"),  # 10 gigapixels in 60 bytes: Pillow's bomb error
    (png_claiming(8_000, 6_000), "more than 40 megapixels"),  # under Pillow's limit, over Herald's
])
def test_refusals_name_the_problem(content, message):
    with pytest.raises(ImageRejected, match=message):
        images.post_image(upload(content))
    with pytest.raises(ImageRejected, match=message):
        images.avatar_images(upload(content))


def test_pillows_bomb_warning_is_a_refusal_too(monkeypatch):
    from PIL import Image

    monkeypatch.setattr(images, "MAX_PIXELS", 10**12)  # Herald's own limit out of the way
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40 × 30 = 1,200: a warning, not yet an error
    with pytest.raises(ImageRejected, match="too large to open"):
        images.post_image(upload(picture(40, 30)))


def test_over_ten_megabytes_is_refused_before_decoding(monkeypatch):
    opened = []
    from PIL import Image

    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a))
    big = upload(b"\xff\xd8\xff" + b"\0" * images.MAX_BYTES)
    with pytest.raises(ImageRejected, match="larger than 10 MB"):
        images.post_image(big)
    assert opened == []
