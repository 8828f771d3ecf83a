"""The ``streamd`` command: run, check, subscribe, bench, quantize."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from streamd import __version__
from streamd.config.load import load_config, parse_config
from streamd.config.schema import DEFAULT_PUBLISH_ENDPOINT, Config
from streamd.errors import ConfigError, StreamdError

log = logging.getLogger("streamd")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _load(path: str | None) -> Config:
    if path:
        return load_config(path)
    from streamd.models import demo_config_document  # noqa: PLC0415 - the out-of-the-box default

    return parse_config(demo_config_document(), path="(built-in demo)")


def _install_stop_signals(stop: threading.Event) -> None:
    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _setup_logging(args.log_level or config.daemon.log_level)
    from streamd.daemon.service import run_service  # noqa: PLC0415 - keeps `--help` fast

    stop = threading.Event()
    _install_stop_signals(stop)
    return run_service(config, stop)


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _setup_logging(args.log_level or "warning")
    from streamd.daemon.check import check_config  # noqa: PLC0415

    return EXIT_OK if check_config(config, print) else EXIT_FAILURE


def cmd_subscribe(args: argparse.Namespace) -> int:
    from streamd.publish.subscriber import Subscriber, format_message  # noqa: PLC0415

    stop = threading.Event()
    _install_stop_signals(stop)
    with Subscriber(args.endpoint, tuple(args.source) or ("",)) as subscriber:
        print(f"listening on {args.endpoint} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        received = 0
        while not stop.is_set() and (args.count == 0 or received < args.count):
            message = subscriber.receive(0.2)
            if message is None:
                continue
            received += 1
            print(format_message(message), flush=True)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "warning")
    from streamd.bench.run import run_bench  # noqa: PLC0415

    return run_bench(args)


def cmd_quantize(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from streamd.quantize.cli import main as quantize_main  # noqa: PLC0415

    return quantize_main(list(rest))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamd", description="Streaming video analytics daemon.")
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="run the daemon (no --config: the built-in demo)")
    run.add_argument("--config", "-c", help="TOML config file")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check", help="validate a config, open every source and the model once")
    check.add_argument("--config", "-c", help="TOML config file")
    check.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    check.set_defaults(handler=cmd_check)

    subscribe = commands.add_parser("subscribe", help="print detections as they arrive")
    subscribe.add_argument("endpoint", nargs="?", default=DEFAULT_PUBLISH_ENDPOINT)
    subscribe.add_argument("--source", action="append", default=[], help="only this source (repeatable)")
    subscribe.add_argument("--count", type=int, default=0, help="exit after this many messages")
    subscribe.set_defaults(handler=cmd_subscribe)

    from streamd.bench.arguments import add_bench_arguments  # noqa: PLC0415

    bench = commands.add_parser("bench", help="raw backend vs the full pipeline, same frames, one run")
    add_bench_arguments(bench)
    bench.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    bench.set_defaults(handler=cmd_bench)

    commands.add_parser("quantize", help="INT8/FP16/FP32 engines (tools/quantize.py); see quantize --help",
                        add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["quantize"]:
        return cmd_quantize(argparse.Namespace(), argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"streamd: invalid configuration: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except StreamdError as error:
        print(f"streamd: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
