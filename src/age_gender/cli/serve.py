"""A REST API and a web page for age and gender estimation (see README.md).

python serve.py                                  http://127.0.0.1:8000, the default model
python serve.py --weight_file exported/m.onnx    an exported model, no TensorFlow needed
python serve.py --model dlib-models --token SECRET --cors https://example.org
"""

import argparse
import dataclasses
import socket
import ssl
from pathlib import Path

from age_gender.apps.limits import Limits
from age_gender.cli import options
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    options.add_model_options(parser)
    options.add_detector_options(parser, "default 1: uploads are photos, faces can be small")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines")
    parser.add_argument("--port", type=number(int, 0, 65535), default=8000, help="0: any free port")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /v1 routes")
    parser.add_argument("--cors", metavar="ORIGIN", help="allow this web origin to call the API")
    for field in dataclasses.fields(Limits):
        parser.add_argument(
            f"--{field.name}", type=number(field.type, field.metadata["minimum"]),
            default=field.default, help=f"{field.metadata['help']} (default {field.default})",
        )  # fmt: skip
    parser.add_argument(
        "--ssl-certfile", "--ssl_certfile", dest="ssl_certfile", type=Path,
        help="serve HTTPS with this certificate (PEM): browsers give the camera and keep a "
        "--token private only on https:// pages (or on localhost)",
    )  # fmt: skip
    parser.add_argument(
        "--ssl-keyfile", "--ssl_keyfile", dest="ssl_keyfile", type=Path,
        help="the certificate's private key (PEM)",
    )  # fmt: skip
    return parser.parse_args(argv)


def check_tls(args: argparse.Namespace) -> None:
    """Both TLS files or neither, and readable; a warning when other machines are let in over
    plain HTTP (their browsers deny the page the camera, and a token crosses the network in
    clear text)."""
    given = [path for path in (args.ssl_certfile, args.ssl_keyfile) if path is not None]
    if len(given) == 1:
        raise UserError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    for path in given:
        if not path.is_file():
            raise UserError(f"TLS file {path} not found")
    if given:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(*given)
        except (ssl.SSLError, OSError) as error:
            raise UserError(
                f"cannot use {given[0]} with {given[1]}: {error}; give a PEM certificate and its "
                "private key"
            ) from error
    loopback = args.host in ("127.0.0.1", "localhost", "::1") or args.host.startswith("127.")
    if not given and not loopback:
        print(
            f"warning: serving {args.host} over plain HTTP: other machines' browsers will not "
            "give the page the camera, and a --token crosses the network readable; pass "
            "--ssl-certfile and --ssl-keyfile (see docs/serving.md, 'HTTPS on a LAN')"
        )


def check_port(host: str, port: int) -> None:
    """Fails in one line when host:port cannot be listened on (taken, or not this machine's)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(
                f"cannot listen on {host}:{port}: {error.strerror}; choose another --port or --host"
            ) from error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvicorn

        from age_gender.apps import serving
    except ImportError as error:
        raise UserError(f"serve.py needs {error.name}: pip install 'age-gender[serve]'") from error

    check_port(args.host, args.port)  # before the model loads: a taken port fails fast
    check_tls(args)
    limits = Limits(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(Limits)}
    )
    protocol = serving.connection_protocol(limits)  # before the model: a bad uvicorn fails fast
    inference = serving.Inference(options.load_model(args), options.make_detector(args, 1), limits)
    app = serving.create_app(inference, args.token, args.cors)
    print(f"model: {inference.model_name}, detector: {args.detector}")
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="info",
        http=protocol,
        ssl_certfile=args.ssl_certfile and str(args.ssl_certfile),
        ssl_keyfile=args.ssl_keyfile and str(args.ssl_keyfile),
    )  # fmt: skip


if __name__ == "__main__":
    main()
