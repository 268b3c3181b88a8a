"""A checksummed download of weight files into pretrained_models/ (which files: `presets`)."""

import dataclasses
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from age_gender.errors import UserError
from age_gender.files import atomic_output

WEIGHTS_DIR = Path("pretrained_models")


@dataclasses.dataclass(frozen=True)
class WeightFile:
    name: str
    url: str
    md5: str


class DownloadError(UserError):
    """The file could not be fetched (no network, missing, cut, or a wrong checksum)."""


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(weight: WeightFile, folder: Path = WEIGHTS_DIR, timeout: float = 30) -> Path:
    """The weight file in `folder`, downloaded once; a cut or corrupt download never stays.

    AGE_GENDER_WEIGHTS_URL replaces the folder part of the URL (a mirror).
    """
    path = folder / weight.name
    if path.exists():
        return path
    mirror = os.environ.get("AGE_GENDER_WEIGHTS_URL")
    url = f"{mirror.rstrip('/')}/{weight.name}" if mirror else weight.url
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A new opener each time: it reads the proxy settings of now, not of the first call.
        opener = urllib.request.build_opener()
        with opener.open(url, timeout=timeout) as response, atomic_output(path) as part:
            print(f"downloading {url}")  # once it answers: offline, the one line is the error's
            expected = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with open(part, "wb") as file, tqdm(total=expected, unit="B", unit_scale=True) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    file.write(block)
                    received += len(block)
                    bar.update(len(block))
            if expected and received != expected:
                raise DownloadError(f"download of {url} was cut at {received} of {expected} bytes")
            if file_md5(part) != weight.md5:
                raise DownloadError(
                    f"{url} has the wrong checksum (expected MD5 {weight.md5}); deleted it"
                )
    except urllib.error.HTTPError as error:
        raise DownloadError(f"cannot download {url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"cannot download {url}: {reason}") from error
    return path
