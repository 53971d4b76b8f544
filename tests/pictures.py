"""Pictures made in memory for the image tests: real files, made with Pillow, plus the hostile ones
(a header claiming billions of pixels, a file cut short, a GPS position in EXIF)."""
import io
import struct
import zlib

from django.core.files.uploadedfile import SimpleUploadedFile


def picture(width=64, height=48, color=(200, 30, 30), fmt="PNG", **save) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, fmt, **save)
    return out.getvalue()


def halves(width, height, left=(255, 0, 0), right=(0, 0, 255), fmt="PNG") -> bytes:
    """Left half one colour, right half another: shows which way a picture was turned or cropped."""
    from PIL import Image

    image = Image.new("RGB", (width, height), left)
    image.paste(Image.new("RGB", (width - width // 2, height), right), (width // 2, 0))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


GPS_LATITUDE = (52.0, 22.0, 12.5)


def jpeg_with_gps_and_orientation(width=200, height=100, orientation=6) -> bytes:
    """A phone photo as phones write it: a GPS position and an Orientation tag (6: turn 90° clockwise
    to show it upright), over landscape pixels."""
    from PIL import ExifTags, Image

    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "HeraldPhone"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (4.0, 53.0, 40.0)
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 220)).save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for an 8-bit RGB picture of width × height, with a few bytes of data: a
    decompression bomb's shape (a few hundred bytes that claim to be gigapixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")


def animated_gif(colors=((255, 0, 0), (0, 0, 255))) -> bytes:
    from PIL import Image

    frames = [Image.new("RGB", (40, 30), c) for c in colors]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def upload(content: bytes, name="picture.png", content_type="image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


def decoded(content: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(content))
    image.load()
    return image
