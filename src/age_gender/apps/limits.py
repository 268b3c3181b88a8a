"""What one request may ask of the REST server, declared once: serve.py's options are made from
these fields (name, type, default, lowest value, help), and the app reads them."""

import dataclasses


def limit(default: float, minimum: float, help: str) -> dataclasses.Field:
    return dataclasses.field(default=default, metadata={"minimum": minimum, "help": help})


@dataclasses.dataclass(frozen=True)
class Limits:
    max_upload_mb: float = limit(10.0, 0.001, "largest upload (MB)")
    max_megapixels: float = limit(
        40.0, 0.001, "largest image, in millions of pixels (decompression bombs stop here)"
    )
    queue: int = limit(64, 1, "requests in progress at once; more get 503")
    body_timeout: float = limit(
        20.0, 0.1, "seconds a request body may stall (wait for its next piece) before 408: "
        "slow clients cannot pin the server",
    )  # fmt: skip
    header_timeout: float = limit(
        10.0, 0.1, "seconds a connection may go without sending a whole request's headers "
        "before it is closed (a new one, or one kept alive between requests)",
    )  # fmt: skip
    max_connections: int = limit(
        256, 1, "open connections at once; beyond it the longest-idle ones are closed, and a "
        "new one gets 503 only when all are being served",
    )  # fmt: skip
    min_upload_rate: int = limit(
        500, 0, "bytes per second a request body must average once --upload_grace has passed, "
        "or 408 (0: no minimum): a byte now and then, never quite a stall, cannot hold a "
        "connection",
    )  # fmt: skip
    upload_grace: float = limit(
        10.0, 0.1, "seconds a request body may take before --min_upload_rate applies: a small "
        "upload may start slowly",
    )  # fmt: skip

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)
