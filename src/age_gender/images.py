"""The one image reader (demo, annotate, evaluate, landmarks, serve, and training's pipeline) and
the one rule for what is an image.

Files are read as bytes by Python and decoded by `cv2.imdecode`: OpenCV's own file functions
crash on names that are not valid UTF-8. Decoding is strict: a JPEG cut short (OpenCV would fill
the missing part grey and report a face in it) or a PNG without its end is unreadable, not half
an image. Training's `dataset.drop_unreadable` refuses what this reader refuses, and JPEGs that
TensorFlow's strict decoder refuses besides (coded data scrambled, which OpenCV reads as noise).
"""

import errno
import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

MAX_PIXELS = 1 << 30  # OpenCV's CV_IO_MAX_IMAGE_PIXELS: it refuses larger images
JPEG = b"\xff\xd8\xff"  # a JPEG's first bytes (and an MPO's, a phone's multi-picture JPEG)
# The first bytes of the formats OpenCV decodes (TIFF and WebP included), by which a file is an
# image whatever its name.
SIGNATURES = (
    JPEG,
    b"\x89PNG\r\n\x1a\n",
    b"BM",
    b"II*\x00",
    b"MM\x00*",  # TIFF
    b"GIF8",  # its first frame
)


def has_image_signature(head: bytes) -> bool:
    """Whether bytes start like an image file of a format OpenCV decodes."""
    webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return webp or head.startswith(SIGNATURES)


# Named as images: listed by every command, and reported unreadable where OpenCV cannot decode
# them (HEIC and AVIF, a phone's formats), never passed over.
SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
    ".pbm", ".pnm", ".jp2", ".sr", ".ras", ".gif", ".heic", ".heif", ".avif",
}  # fmt: skip


def is_image_file(path: Path) -> bool:
    """The one rule for what is an image: a file named as one (then one that fails to decode
    is reported unreadable, not passed over) or whose first bytes say so (`photo`, no suffix)."""
    if not Path(path).is_file():
        return False
    if Path(path).suffix.lower() in SUFFIXES:
        return True
    try:
        with open(path, "rb") as file:
            return has_image_signature(file.read(12))
    except OSError:
        return False


def is_jpeg(data: bytes) -> bool:
    return data.startswith(JPEG)  # as TensorFlow's tf.io.is_jpeg tests it


def jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's main image reaches its end marker: the segments before the main scan are
    walked (an EXIF thumbnail, with an end marker of its own, sits inside one of them), then the
    end marker is looked for after the scan starts; data after it (a phone's motion video) is
    allowed."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: the coded image follows
            return data.rfind(b"\xff\xd9", position) != -1  # from the end: found at once
        if marker in (0x01, 0xFF) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2 if marker != 0xFF else 1
            continue
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False


def complete(data: bytes) -> bool:
    """False for a JPEG or PNG cut short (OpenCV would decode it, grey where data is missing)."""
    if is_jpeg(data):
        return jpeg_complete(data)
    if data.startswith(b"\x89PNG"):
        return png_complete(data)
    return True


def png_complete(data: bytes) -> bool:
    """Whether a PNG's chunks run whole to IEND: each is walked by its length (bytes after IEND,
    which some writers append, are allowed)."""
    position = 8
    while position + 8 <= len(data):
        kind = data[position + 4 : position + 8]
        position += 12 + int.from_bytes(data[position : position + 4], "big")
        if kind == b"IEND":
            return position <= len(data)
    return False


def decode_image(data: bytes, rgb: bool = True) -> np.ndarray | None:
    """RGB uint8 from an image file's bytes, whatever they hold (grey, alpha, 16-bit, EXIF
    orientation); None for bytes that are not a whole image. `rgb=False` gives OpenCV's BGR,
    for a caller that encodes it again."""
    if not data or not complete(data):
        return None
    flags = cv2.IMREAD_COLOR_RGB if rgb else cv2.IMREAD_COLOR  # the decoder writes RGB itself
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:  # a header claiming more than MAX_PIXELS: not an image to read
        return None


def with_note(jpeg: bytes, note: dict) -> bytes:
    """The JPEG with `note` as JSON in a comment segment (COM) right after its start marker:
    what a cached image records about itself, read back by `read_note`."""
    text = json.dumps(note).encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def read_note(path: Path) -> dict | None:
    """The note `with_note` wrote into a whole JPEG; None when the file is missing, cut (a full
    disk, by hand) or holds no note."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not complete(data) or data[2:4] != b"\xff\xfe":
        return None
    length = int.from_bytes(data[4:6], "big")
    try:
        note = json.loads(data[6 : 4 + length])
    except ValueError:
        return None
    return note if isinstance(note, dict) else None


def open_regular(path: str | Path) -> BinaryIO:
    """A file opened for reading; OSError for anything but a regular file (reading a FIFO waits
    for a writer forever, a device may never end)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    file = os.fdopen(descriptor, "rb")
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        file.close()
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return file


def file_bytes(path: str | Path) -> bytes:
    """A regular file's bytes (`open_regular`)."""
    with open_regular(path) as file:
        return file.read()


def read_image(path: Path) -> np.ndarray | None:
    """`decode_image` of a file; None when it cannot be read (missing, a folder, a FIFO, no
    access, a name with a NUL byte)."""
    try:
        return decode_image(file_bytes(path))
    except (OSError, ValueError):
        return None


def readable_file(path: str) -> bool:
    """Whether this reader reads a file. JPEGs are checked whole by their markers only, as the
    caller decodes them itself (training's strict probe, at a fraction of the cost); any other
    file is decoded."""
    try:
        data = file_bytes(path)
    except (OSError, ValueError):
        return False
    if is_jpeg(data):
        return complete(data)
    return decode_image(data) is not None


def unreadable_reason(path: str) -> str:
    """Why an image file failed to decode: missing, empty, not an image, truncated, or corrupt.

    Reads only the first and last bytes: a cut JPEG lacks its end marker, a cut PNG its IEND chunk.
    """
    try:
        with open_regular(path) as file:
            head = file.read(12)
            file.seek(max(0, file.seek(0, 2) - 1024))
            tail = file.read()
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return error.strerror or "unreadable"
    if not head:
        return "empty"
    if is_jpeg(head):
        return "corrupt JPEG" if b"\xff\xd9" in tail else "truncated JPEG"
    if head.startswith(b"\x89PNG"):
        return "corrupt PNG" if b"IEND" in tail else "truncated PNG"
    if has_image_signature(head):
        return "corrupt image"
    return "not an image OpenCV decodes"


def once_each(paths: list) -> list:
    """The files among `paths`, sorted, each file once however many paths (links, link loops
    that a glob's `**` walks into) lead to it."""
    seen, unique = set(), []
    for path in sorted(paths):
        real = os.path.realpath(path)
        if real not in seen and Path(path).is_file():
            seen.add(real)
            unique.append(path)
    return unique


def glob_files(pattern: str) -> list[str]:
    """The paths a glob pattern matches, `**` through every folder below but not into linked
    ones: glob.glob's `**` walks into link loops (`sub/up -> ..`) and never ends."""
    path = Path(pattern)
    start = Path(path.anchor) if path.anchor else Path()
    relative = str(path.relative_to(path.anchor)) if path.anchor else pattern
    hidden = path.name.startswith(".")  # as glob.glob: `*` does not match `.x`, `.*` does
    return [str(match) for match in start.glob(relative)
            if hidden or not match.name.startswith(".")]  # fmt: skip


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder` (`is_image_file`), sorted, each once: symbolic links to
    folders are followed once, and a file reached by two paths (links) counts once."""
    seen_folders, found = set(), []
    for current, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen_folders:  # a link loop, or a folder linked twice
            folders[:] = []
            continue
        seen_folders.add(real)
        found += [Path(current) / name for name in files if is_image_file(Path(current) / name)]
    return once_each(found)
