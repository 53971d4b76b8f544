"""Uploaded pictures served by Herald itself when they are files under MEDIA_ROOT (make run, the
tests' live server, a single-host install). With MEDIA_BUCKET they are S3's to serve and this
answers 404.

Every stored name is new and random (feed.media), so a file never changes: browsers may keep it
for a year. Only the pictures Herald wrote are here (re-encoded WebP), served as images with
nosniff, never as pages.
"""
from django.conf import settings
from django.http import Http404
from django.views.static import serve


def serve_media(request, path):
    if settings.MEDIA_BUCKET:
        raise Http404("Pictures are served from the bucket.")
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
