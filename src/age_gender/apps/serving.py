"""The REST API and its web page: one model, loaded once, behind limits that keep the server up.

The server never reads a path or fetches a URL named in a request, keeps uploads in memory only,
and answers every mistake with a JSON error and its status, never a traceback. Detection and
estimation run in worker threads, one image at a time (the detectors and the models are not
shared between threads), so the event loop keeps accepting and refusing requests meanwhile.
"""

import asyncio
import dataclasses
import io
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, create_model
from starlette.formparsers import MultiPartParser

from age_gender.apps.api import FaceAnalyzer
from age_gender.apps.limits import Limits
from age_gender.data.records import face_record, json_record
from age_gender.errors import UserError
from age_gender.faces.detection import DETECTORS, FaceDetector
from age_gender.images import decode_image
from age_gender.schema import FACE_TYPES

WEB = Path(__file__).parent / "web"
FORMATS = {"JPEG", "MPO", "PNG", "WEBP"}  # MPO: a phone's multi-picture JPEG
MULTIPART_OVERHEAD = 64 * 1024  # bytes of a multipart body around the file: boundaries, headers
DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of a refused body read (and dropped) before the answer
log = logging.getLogger(__name__)


FaceRecord = create_model(
    "FaceRecord", **{column: (kind, ...) for column, kind in FACE_TYPES.items()}
)


class PredictResponse(BaseModel):
    width: int
    height: int
    model: str
    time_ms: float
    faces: list[FaceRecord]


class UploadLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before anything parses it;
    a body that stalls for `timeout` seconds, or that averages under `min_rate` bytes/s once
    `grace` seconds have passed, gets 408 and its connection closed. A stall timer alone lets
    a client hold a connection for as long as it sends a byte just before each deadline; the
    minimum rate (as Apache's mod_reqtimeout `MinRate`) bounds that to the grace period.

    The body is gathered in memory up to the limit (never spooled to disk), then handed on. A
    refused body is read to its end (up to DRAIN_LIMIT, while it keeps to the same pace) before
    the answer: a client that is still sending when the server closes sees a reset, not the 413
    (Python's urllib, requests).
    """

    def __init__(self, app, limit: int, timeout: float, min_rate: int, grace: float):
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self.min_rate = min_rate
        self.grace = grace

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.monotonic()
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            return await self.refuse(scope, receive, send, int(length) <= DRAIN_LIMIT, started)
        chunks, size, more = [], 0, True
        while more:
            wait, too_slow = self.patience(started, size)
            try:
                message = await asyncio.wait_for(receive(), wait)
            except asyncio.TimeoutError:  # TimeoutError itself only from Python 3.11
                return await self.timed_out(scope, receive, send, started, size, too_slow)
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self.refuse(scope, receive, send, more, started, size)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def patience(self, started: float, size: int) -> tuple[float, bool]:
        """Seconds to wait for the body's next piece, and whether the rate (not a stall) is
        what runs out then: the average since `started` stays at `min_rate` until `size` bytes
        have lasted size / min_rate seconds, and is not checked before the grace period ends."""
        stall = self.timeout
        if self.min_rate <= 0:
            return stall, False
        slow = started + max(self.grace, size / self.min_rate) - time.monotonic()
        return (max(slow, 0.0), True) if slow < stall else (stall, False)

    async def timed_out(
        self, scope, receive, send, started: float, size: int, too_slow: bool
    ) -> None:
        """408, closing the connection: the rest of a body that slow is not worth waiting for."""
        if too_slow:
            rate = size / (time.monotonic() - started)
            detail = (f"the request body came at {rate:.0f} bytes/s, under the server's minimum "
                      f"of {self.min_rate} bytes/s")  # fmt: skip
        else:
            detail = f"the request body stalled for {self.timeout:g} s"
        answer = JSONResponse({"detail": detail}, 408, headers={"connection": "close"})
        await answer(scope, receive, send)

    async def refuse(
        self, scope, receive, send, drain: bool, started: float, size: int = 0
    ) -> None:
        """413, after reading what is left of the body (up to DRAIN_LIMIT, while it flows at
        the pace a body must keep)."""
        more = drain
        while more and size <= DRAIN_LIMIT:
            try:
                message = await asyncio.wait_for(receive(), self.patience(started, size)[0])
            except asyncio.TimeoutError:
                break
            size += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
        megabytes = (self.limit - MULTIPART_OVERHEAD) / 1_000_000
        detail = f"the upload is over the server's limit of {megabytes:g} MB"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
    b"content-length: 20\r\nconnection: close\r\n\r\nbusy: retry shortly"
)


UVICORN = ">=0.30,<0.56"  # as pyproject.toml pins it; the tests pass on 0.30.6 and 0.55.0
GUARD_NEEDS = ("conn", "connections", "loop", "transport", "on_response_complete")


def check_protocol(protocol: type) -> None:
    """Refuses in one line an HTTP protocol class (uvicorn's H11Protocol) that lacks one of the
    private parts the connection guards extend: another uvicorn release may rename them, and
    the guards would fail on the first connection instead of at start-up."""

    async def no_app(scope, receive, send) -> None:
        """The sample connection below runs no request."""

    loop = asyncio.new_event_loop()
    try:  # a connection never made: the attributes are those its __init__ sets
        import h11
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        sample = protocol(config=Config(no_app, log_config=None), server_state=ServerState(),
                          app_state={}, _loop=loop)  # fmt: skip
    except Exception as error:  # a release whose constructor, or what it takes, changed
        missing = [f"the constructor uvicorn{UVICORN} has ({error})"]
    else:
        missing = [name for name in GUARD_NEEDS if not hasattr(sample, name)]
        if "conn" not in missing and not isinstance(sample.conn, h11.Connection):
            missing.append("an h11.Connection as conn")
    finally:
        loop.close()
    if missing:
        from uvicorn import __version__

        raise UserError(
            f"uvicorn {__version__} is not one serve.py supports: its {protocol.__name__} lacks "
            f"{', '.join(missing)}, which the connection guards extend; pip install "
            f"'uvicorn{UVICORN}'"
        )


def connection_protocol(limits: Limits) -> type:
    """uvicorn's h11 protocol, with two guards uvicorn lacks: a connection that has not sent a
    whole request's headers within `header_timeout` (a new one, or one idle between
    requests) is closed, and `max_connections` counts the connections being served: a new
    connection beyond it closes the longest-idle ones (those with no request in progress,
    headers half sent included) rather than be refused while sockets merely wait.

    The guards extend H11Protocol's private parts (GUARD_NEEDS): checked here, at start-up."""
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError as error:
        raise UserError(f"this uvicorn has no h11 protocol ({error}), which the connection "
                        f"guards extend; pip install 'uvicorn{UVICORN}'") from error  # fmt: skip
    check_protocol(H11Protocol)
    import h11

    answering = (h11.SEND_RESPONSE, h11.SEND_BODY)  # h11's server states while a request is on

    class GuardedProtocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.deadline = None
            self.arm()
            self.make_room()

        def make_room(self) -> None:
            open_ = [c for c in self.connections if not c.transport.is_closing()]
            excess = len(open_) - limits.max_connections
            if excess <= 0:
                return
            idle = sorted((c for c in open_ if c is not self and isinstance(c, GuardedProtocol)
                           and c.idle()), key=lambda c: c.idle_since)  # fmt: skip
            for connection in idle[:excess]:
                connection.transport.close()
            if len(idle) < excess:  # every other connection is being served
                self.transport.write(BUSY)
                self.transport.close()

        def idle(self) -> bool:
            return self.conn.our_state not in answering

        def arm(self) -> None:
            self.disarm()
            self.idle_since = self.loop.time()
            self.deadline = self.loop.call_later(limits.header_timeout, self.expire)

        def disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def expire(self) -> None:
            if self.idle() and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self.idle():
                self.disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.idle():
                self.arm()

        def connection_lost(self, exc) -> None:
            self.disarm()
            super().connection_lost(exc)

    return GuardedProtocol


def decode_upload(data: bytes, limits: Limits) -> np.ndarray:
    """The uploaded image as RGB uint8, or the HTTP error it earns.

    Pillow reads the format and size from the header before any pixel is decoded, so a
    decompression bomb costs nothing; the pixels are decoded once, by the one image reader of
    every command (`images.decode_image`: strict, 16-bit and EXIF orientation handled alike).
    """
    if not data:
        raise HTTPException(422, "the uploaded file is empty")
    if len(data) > limits.max_upload_bytes:
        raise HTTPException(413, f"the image is over the limit of {limits.max_upload_mb:g} MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in FORMATS:
                raise HTTPException(415, f"{image.format} is not accepted; send JPEG, PNG or WebP")
            if image.width * image.height > limits.max_megapixels * 1e6:
                raise HTTPException(
                    413, f"the image has {image.width} x {image.height} pixels, over the limit "
                    f"of {limits.max_megapixels:g} megapixels",
                )  # fmt: skip
    except UnidentifiedImageError as error:
        raise HTTPException(415, "not an image; send JPEG, PNG or WebP") from error
    except Image.DecompressionBombError as error:
        raise HTTPException(413, f"the image is over the pixel limit: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's errors for damaged headers
        raise HTTPException(422, f"the image is truncated or corrupt: {error}") from error
    decoded = decode_image(data)
    if decoded is None:
        raise HTTPException(422, "the image is truncated or corrupt")
    return decoded


class Inference:
    """The detector and the estimator, used by one thread at a time."""

    def __init__(self, estimator, detector: FaceDetector, limits: Limits):
        self.estimator = estimator
        self.detector = detector
        self.analyzer = FaceAnalyzer(estimator, detector)
        self.limits = limits
        self.lock = threading.Lock()
        self.model_name = Path(estimator.name).name  # a file name, never a server path
        self.warm_up()

    def warm_up(self) -> None:
        """One call of each, so the first request does not pay for graph building or caches."""
        blank = np.zeros((240, 320, 3), np.uint8)
        with self.lock:
            self.detector.detect(blank)
            self.estimator.predict(blank, [(100, 60, 220, 180)])

    def predict(self, data: bytes) -> PredictResponse:
        started = time.perf_counter()
        image = decode_upload(data, self.limits)
        with self.lock:
            faces, predictions = self.analyzer.estimate(image)
        records = [FaceRecord(**json_record(face_record(face, prediction)))
                   for face, prediction in zip(faces, predictions, strict=True)]  # fmt: skip
        return PredictResponse(
            width=image.shape[1],
            height=image.shape[0],
            model=self.model_name,
            time_ms=round((time.perf_counter() - started) * 1000, 1),
            faces=records,
        )

    def describe(self) -> dict:
        card = self.estimator.card
        return {
            "model": self.model_name,
            "card": None if card is None else card.shareable(),  # no training machine's paths
            "detector": dataclasses.asdict(self.detector.spec),
            "detectors": list(DETECTORS),
            "limits": dataclasses.asdict(self.limits),
        }


def bearer_check(token: str | None):
    """A dependency that lets a request through only with `Authorization: Bearer <token>`."""
    scheme = HTTPBearer(auto_error=False)

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)]):
        if token is None:
            return
        # As bytes: compare_digest refuses str with characters beyond ASCII (a 500 before).
        # Header values arrive decoded as Latin-1: encoding them back gives the bytes sent.
        given = None if credentials is None else credentials.credentials.encode("latin-1")
        if given is None or not secrets.compare_digest(given, token.encode("utf-8")):
            raise HTTPException(
                401, "a valid bearer token is needed", headers={"WWW-Authenticate": "Bearer"}
            )

    return check


def create_app(
    inference: Inference, token: str | None = None, cors_origin: str | None = None
) -> FastAPI:
    """The API (`/v1/...`, `/healthz`), the web page at `/`, and the limits around them."""
    # FastAPIOffline: FastAPI whose OpenAPI page (/docs) is served from the package, no CDN.
    app = FastAPIOffline(
        title="age-gender",
        summary="Age and gender of the faces in an image",
        version="1",
    )
    limits = inference.limits
    # Multipart files stay in memory up to the upload limit: an upload is never written to disk.
    MultiPartParser.spool_max_size = limits.max_upload_bytes + MULTIPART_OVERHEAD
    app.add_middleware(
        UploadLimit, limit=limits.max_upload_bytes + MULTIPART_OVERHEAD,
        timeout=limits.body_timeout, min_rate=limits.min_upload_rate, grace=limits.upload_grace,
    )  # fmt: skip
    if cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[cors_origin],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )
    authorised = [Depends(bearer_check(token))]
    active = 0

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("error while answering %s", request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details"}, 500)

    @app.post("/v1/predict", dependencies=authorised)
    async def predict(
        image: Annotated[UploadFile, File(description="a JPEG, PNG or WebP image")],
    ) -> PredictResponse:
        """Faces in the image, each with its box, age, age spread and gender."""
        nonlocal active
        if active >= limits.queue:
            raise HTTPException(503, f"busy: {active} requests in progress; retry shortly")
        active += 1
        try:
            data = await image.read()
            return await run_in_threadpool(inference.predict, data)
        finally:
            active -= 1

    @app.get("/v1/model", dependencies=authorised)
    def model() -> dict:
        """The model, its card, the detector settings and the request limits."""
        return inference.describe()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    app.mount("/web", StaticFiles(directory=WEB), name="web")
    return app
