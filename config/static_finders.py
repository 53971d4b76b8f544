"""The npm files the browser loads, and nothing else from node_modules.

A STATICFILES_DIRS entry for an npm package's dist/ folder would collect every build in it (htmx
ships seven, MQTT.js three: 2.4 MB, most of it never requested) into STATIC_ROOT and so into the
Lambda package. This finder offers only the files the templates name, under the same URLs.
"""
from django.conf import settings
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage


class NpmFileFinder(BaseFinder):
    """Finds settings.NPM_STATIC_FILES: {url path: file under node_modules}."""

    def __init__(self, *args, **kwargs):
        root = settings.BASE_DIR / "node_modules"
        self.files = {url: root / source for url, source in settings.NPM_STATIC_FILES.items()}
        self.storages = {}
        for url, path in self.files.items():
            prefix, _, _ = url.rpartition("/")
            storage = FileSystemStorage(location=str(path.parent))
            storage.prefix = prefix
            self.storages[url] = storage
        super().__init__(*args, **kwargs)

    def check(self, **kwargs):
        # Missing files (npm ci not run yet) are reported by collectstatic and by the pages' tests;
        # here only the shape of the setting is checked.
        return [Error(f"NPM_STATIC_FILES: {url!r} must be a path under a folder, like 'vendor/x/x.js'.",
                      id="herald.E001") for url in self.files if "/" not in url]

    def find(self, path, find_all=False, **kwargs):
        found = self.files.get(path)
        match = [str(found)] if found is not None and found.is_file() else []
        return match if find_all or kwargs.get("all") else (match[0] if match else [])

    def list(self, ignore_patterns):
        for url, path in self.files.items():
            if path.is_file():
                yield path.name, self.storages[url]
