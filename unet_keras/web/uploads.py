"""Uploaded files, read into memory only, and their file type.

Starlette's form parser spools file parts to a temporary file on disk past 1 MiB.
:func:`read_uploads` raises that threshold to the request size limit, so an upload never
touches the disk: the server keeps no copy of a patient's slice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePath

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

#: File suffixes the page accepts; ``.mat`` is the Figshare ``cjdata`` format.
SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".mat")
SUPPORTED = "PNG, JPEG, TIFF or Figshare .mat"


class UploadError(ValueError):
    """A request whose upload cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its name as sent and its bytes."""

    filename: str
    data: bytes


def check_type(upload: Upload) -> None:
    """Accept a PNG, JPEG, TIFF or ``.mat`` file, judged by its name's suffix (as the readers do).

    Raises :class:`UploadError`: 415 for any other type, 422 for an empty file.
    """
    if not upload.data:
        raise UploadError(422, f"{upload.filename}: the file is empty")
    if PurePath(upload.filename).suffix.lower() not in SUFFIXES:
        raise UploadError(415, f"{upload.filename}: not a supported file type; "
                               f"upload a {SUPPORTED} file")


async def read_uploads(request: Request, names: tuple[str, ...],
                       max_bytes: int) -> dict[str, Upload]:
    """The file fields of a ``multipart/form-data`` request that are among ``names``.

    Args:
        request: the incoming request.
        names: accepted file field names; any other field is rejected.
        max_bytes: the request body limit (all files together, multipart framing included).

    Raises :class:`UploadError`: 413 past ``max_bytes`` (judged by ``Content-Length`` before
    reading, and by counting while reading), 415 if the body is not multipart, 422 if it is
    malformed or has unknown or repeated fields.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UploadError(415, "send the file as multipart/form-data (an HTML file upload), "
                               f"in the field(s) {', '.join(names)}")
    too_large = UploadError(413, f"the upload is larger than the {max_bytes / 2**20:g} MB limit")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large

    async def capped_body() -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise too_large
            yield chunk

    parser = MultiPartParser(request.headers, capped_body(), max_files=len(names),
                             max_fields=0)
    parser.spool_max_size = max_bytes  # file parts stay in memory
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise UploadError(422, f"the upload could not be read: {exc.message}") from None
    uploads: dict[str, Upload] = {}
    try:
        for name, value in form.multi_items():
            if name not in names or not isinstance(value, UploadFile):
                raise UploadError(422, f"unexpected form field {name!r}; "
                                       f"expected file field(s) {', '.join(names)}")
            if name in uploads:
                raise UploadError(422, f"the field {name!r} was sent more than once")
            uploads[name] = Upload(value.filename or name, await value.read())
    finally:
        await form.close()
    return uploads
