"""The ``streamd`` command: run, check, subscribe, bench, quantize."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence

from streamd import __version__
from streamd.config.load import check_endpoint, load_config, parse_config
from streamd.config.schema import DEFAULT_PUBLISH_ENDPOINT, DEFAULT_SEND_HWM, LOG_LEVELS, Config
from streamd.errors import ConfigError, ConfigFileError, KeyFileError, StreamdError

log = logging.getLogger("streamd")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
# `streamd subscribe` says once what to check when nothing has arrived for this long.
SUBSCRIBE_HINT_SECONDS = 5.0
# OpenCV's and FFmpeg's own log lines ("[ WARN:3@0.839] global cap.cpp:212 ...", "[rtsp @ 0x...]
# method DESCRIBE failed") print from C++ in their own format; streamd reports every failure they
# describe in its own line. Off unless the user sets these variables (to debug a camera).
NATIVE_LOG_ENVIRONMENT = {"OPENCV_LOG_LEVEL": "OFF", "OPENCV_FFMPEG_LOGLEVEL": "-8"}  # -8: AV_LOG_QUIET
_HOST_PORT = re.compile(r"^(?P<host>[^/:]+|\[[0-9a-fA-F:]+\]):(?P<port>\d+)$")


def _quiet_native_logs() -> None:
    """Before cv2 is imported (OpenCV reads OPENCV_LOG_LEVEL once; FFmpeg's level at first open)."""
    for name, value in NATIVE_LOG_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def subscribe_endpoint(text: str) -> str:
    """``host:port`` (or a bare port) means TCP; ZeroMQ endpoints pass through (an argparse type)."""
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    if _HOST_PORT.match(text):
        text = f"tcp://{text}"
    try:
        check_endpoint(text, "endpoint")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(f"{error.reason}; expected HOST:PORT or a ZeroMQ endpoint") from error
    if text.endswith(":*"):
        raise argparse.ArgumentTypeError(f"'{text}': a subscriber needs the daemon's port, not '*'")
    return text


def _worker_log_prefix(worker: str) -> None:
    """A standby that became worker N says so in every later line."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s worker {worker} %(name)s: %(message)s"))


def _setup_logging(level: str, worker: str | None = None) -> None:
    """``worker``: a worker process's lines say which worker they come from (one journal, N processes)."""
    prefix = f"worker {worker} " if worker is not None else ""
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")


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


def _install_reload_signal(reload_requested: threading.Event, path: str | None) -> None:
    """SIGHUP (systemctl reload): the daemon's main loop re-reads the config (streamd.daemon.reload)."""
    def request_reload(_signum: int, _frame: object) -> None:
        log.info("received SIGHUP, reloading %s", path or ("the share the supervisor gave this worker"
                                                         if os.environ.get("STREAMD_WORKER") else
                                                         "(the built-in demo has no file)"))
        reload_requested.set()

    signal.signal(signal.SIGHUP, request_reload)


def cmd_run(args: argparse.Namespace) -> int:
    # Logging before the config, so what loading it decides (COCO names by default) is seen; then
    # the config's level, unless --log-level was given.
    worker_spec = getattr(args, "worker_spec", None)
    _setup_logging(args.log_level or "info", worker=os.environ.get("STREAMD_WORKER") if worker_spec else None)
    if worker_spec:  # a worker process of a supervisor (streamd.supervisor): its share of the sources
        from streamd.supervisor.worker_spec import follow_supervisor, load_worker_config, read_spec  # noqa: PLC0415

        follow_supervisor()
        config = read_spec(worker_spec).standby_config() if args.standby else load_worker_config(worker_spec)
    else:
        config = _load(args.config)
    if not args.log_level:
        logging.getLogger().setLevel(config.daemon.log_level.upper())
    from streamd.daemon.malloc import limit_arenas  # noqa: PLC0415
    from streamd.daemon.service import run_service  # noqa: PLC0415 - keeps `--help` fast

    limit_arenas()  # before the daemon's threads: RSS stays flat under churn (streamd.daemon.malloc)
    if os.environ.get("STREAMD_BENCH_STANDIN_ENGINE"):
        from streamd.bench.standin import install_if_requested  # noqa: PLC0415

        install_if_requested()

    stop = threading.Event()
    _install_stop_signals(stop)
    reload_requested = threading.Event()
    _install_reload_signal(reload_requested, args.config)
    if worker_spec and args.standby:
        from streamd.supervisor.standby import run_standby  # noqa: PLC0415

        def become_worker(worker_config: Config, prebuilt: tuple) -> int:
            _worker_log_prefix(os.environ["STREAMD_WORKER"])
            return run_service(worker_config, stop, reload_requested=reload_requested,
                               loader=lambda _path: load_worker_config(worker_spec), prebuilt=prebuilt)

        return run_standby(worker_spec, stop, reload_requested, become_worker)
    if worker_spec:
        return run_service(config, stop, reload_requested=reload_requested,
                           loader=lambda _path: load_worker_config(worker_spec))
    if args.config and _worker_processes(config) > 1:
        from streamd.supervisor.service import run_supervisor  # noqa: PLC0415

        return run_supervisor(config, stop, reload_requested=reload_requested)
    return run_service(config, stop, reload_requested=reload_requested)


def _worker_processes(config: Config) -> int:
    from streamd.supervisor.assignment import worker_count  # noqa: PLC0415
    from streamd.supervisor.service import devices_of  # noqa: PLC0415

    return min(worker_count(config, devices_of(config)), len(config.sources))


def cmd_check(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "warning")
    config = _load(args.config)
    from streamd.daemon.check import check_config  # noqa: PLC0415

    return EXIT_OK if check_config(config, print) else EXIT_FAILURE


def cmd_subscribe(args: argparse.Namespace) -> int:
    from streamd.publish.subscriber import Subscriber, format_message  # noqa: PLC0415

    endpoint = args.endpoint
    stop = threading.Event()
    _install_stop_signals(stop)
    if args.nats:
        return _subscribe_nats(args, stop)
    if (args.server_key is None) != (args.key is None):
        raise KeyFileError("CURVE needs both --server-key (the daemon's NAME.key) and --key (this subscriber's "
                           "NAME.key_secret)")
    from streamd.analytics.events import format_events, topic  # noqa: PLC0415

    if args.events:  # the events/<source> topics instead of the sources' own
        topics = tuple(topic(source) for source in args.source) or (topic(""),)
    else:
        topics = tuple(args.source) or ("",)
    with Subscriber(endpoint, topics, args.server_key, args.key) as subscriber:
        what = f"source(s) {', '.join(args.source)}" if args.source else "every source"
        curve = "CURVE" if args.key else "no CURVE"
        print(f"waiting for {'events' if args.events else 'detections'} from {endpoint} ({what}, {curve}; Ctrl-C "
              "to stop)", file=sys.stderr, flush=True)
        received = 0
        hint_at = time.monotonic() + SUBSCRIBE_HINT_SECONDS
        while not stop.is_set() and (args.count == 0 or received < args.count):
            message = subscriber.receive(0.2)
            if message is None:
                if not received and hint_at and time.monotonic() >= hint_at:
                    print(_nothing_received_hint(args), file=sys.stderr, flush=True)
                    hint_at = 0.0
                continue
            if ("events" in message) != args.events:  # "" takes in the events/ topics too
                continue
            received += 1
            print(format_events(message) if args.events else format_message(message), flush=True)
    return EXIT_OK


def _subscribe_nats(args: argparse.Namespace, stop: threading.Event) -> int:
    """``subscribe --nats``: the JetStream stream that NATS sinks fill (streamd.sinks.nats_consumer)."""
    zeromq_only = [flag for flag, given in (("--source", args.source), ("--events", args.events),
                                            ("--server-key", args.server_key), ("--key", args.key)) if given]
    if zeromq_only:
        print(f"streamd subscribe: {', '.join(zeromq_only)} read a daemon's ZeroMQ endpoint; with --nats, --subject "
              "filters (e.g. streamd.*.SOURCE.events)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        import nats  # noqa: F401, PLC0415
    except ImportError as error:
        raise StreamdError("subscribe --nats needs nats-py: pip install 'streamd[nats]'") from error
    from streamd.sinks.nats_consumer import ConsumerOptions, consume  # noqa: PLC0415

    password = ""
    if args.password_file:
        try:
            with open(args.password_file) as file:  # noqa: PTH123
                password = file.readline().rstrip("\n")
        except OSError as error:
            raise KeyFileError(f"--password-file: cannot read {args.password_file}: {error}") from error
    options = ConsumerOptions(args.nats, args.stream, args.subject or "", args.durable or "", args.new, args.count,
                              args.user or "", password, SUBSCRIBE_HINT_SECONDS)
    consume(options, stop, lambda line: print(line, flush=True), lambda line: print(line, file=sys.stderr,
                                                                                     flush=True))
    return EXIT_OK


def _nothing_received_hint(args: argparse.Namespace) -> str:
    """What to check when a subscriber has heard nothing (ZeroMQ connects quietly, to a daemon or to no one)."""
    checks = ["is the daemon running (streamd run; its log says \"publishing on ...\")",
              f"is its publish.endpoint {args.endpoint}"]
    if args.source:
        checks.append(f"does it have source(s) {', '.join(args.source)} (--source matches source ids)")
    if args.key:
        checks.append("is --server-key the daemon's public key and this subscriber's NAME.key in its "
                      "publish.curve_authorized_keys folder (CURVE)")
    else:
        checks.append("does the daemon use CURVE (publish.curve_secret_key): then give --server-key and --key")
    return (f"nothing received from {args.endpoint} after {SUBSCRIBE_HINT_SECONDS:g} s; still waiting. Check: "
            + "; ".join(checks))


def cmd_bench(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "warning")
    if args.streams or args.sweep or args.make_test_video:
        from streamd.bench.streams import run_streams_bench  # noqa: PLC0415

        return run_streams_bench(args)
    from streamd.bench.run import run_bench  # noqa: PLC0415

    return run_bench(args)


def cmd_keys(args: argparse.Namespace) -> int:
    from streamd.publish.curve import create_key_pair  # noqa: PLC0415

    public, secret = create_key_pair(args.folder, args.name)
    print(f"{public}  public key: give it to the other side (a daemon's authorised-keys folder, or "
          f"subscribers' --server-key)")
    print(f"{secret}  key pair: keep it private (publish.curve_secret_key, or subscribe --key)")
    return EXIT_OK


def cmd_proxy(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "info")
    from streamd.publish.curve import load_key_pair, load_public_key  # noqa: PLC0415
    from streamd.publish.proxy import ProxySettings, run_proxy  # noqa: PLC0415

    if args.key and not (args.upstream_key or args.authorized_keys):
        raise KeyFileError("--key without --upstream-key or --authorized-keys: CURVE on neither side")
    if (args.upstream_key or args.authorized_keys) and not args.key:
        raise KeyFileError("--upstream-key and --authorized-keys need --key (the proxy's NAME.key_secret)")
    settings = ProxySettings(
        upstreams=tuple(args.upstream), bind=args.bind, send_hwm=args.send_hwm,
        key_pair=load_key_pair(args.key) if args.key else None,
        upstream_server_keys=tuple(load_public_key(path) for path in args.upstream_key),
        authorized_keys=args.authorized_keys or "")
    if args.authorized_keys:
        from streamd.publish.curve import check_authorized_keys_folder  # noqa: PLC0415

        check_authorized_keys_folder(args.authorized_keys)
    stop = threading.Event()
    _install_stop_signals(stop)
    return run_proxy(settings, stop)


def cmd_doctor(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "error")
    config = load_config(args.config) if args.config else None
    from streamd.daemon.doctor import run_doctor  # noqa: PLC0415

    return run_doctor(config, args.json)


def cmd_quantize(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from streamd.quantize.cli import main as quantize_main  # noqa: PLC0415

    return quantize_main(list(rest), prog="streamd quantize")


class _DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's ArgumentDefaultsHelpFormatter, less its noise: "(default: X)" only where the help does not
    say its default already and there is one to show (not None, an empty list or false)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "(default" in help_text or "%(default)" in help_text or action.default in (None, [], False) \
                or action.default is argparse.SUPPRESS or not action.option_strings:
            return help_text
        return f"{help_text} (default: %(default)s)"


def _add_log_level(parser: argparse.ArgumentParser, default_text: str) -> None:
    parser.add_argument("--log-level", choices=LOG_LEVELS, help=f"log messages at this level and above "
                                                                f"(default: {default_text})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamd", description="Streaming video analytics daemon: cameras, "
                                     "files and images in, YOLOX detections out over ZeroMQ, metrics over HTTP.")
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    defaults = _DefaultsHelpFormatter

    run_help = "run the daemon (no --config: the built-in demo)"
    run = commands.add_parser("run", help=run_help, description=(
        "Run the daemon until SIGTERM/SIGINT, or until every source has ended. Without --config: a built-in "
        "synthetic scene and detector. Exit status 0 ok, 1 runtime failure, 2 bad config."))
    run.add_argument("--config", "-c", help="TOML config file (default: the built-in demo)")
    _add_log_level(run, "daemon.log_level from the config, info")
    run.add_argument("--worker-spec", help=argparse.SUPPRESS)  # set by the supervisor for its workers
    run.add_argument("--standby", action="store_true", help=argparse.SUPPRESS)  # a supervisor's spare worker
    run.set_defaults(handler=cmd_run)

    check_help = "validate a config, open every source and the model once, try the ports"
    check = commands.add_parser("check", help=check_help, description=(
        "Validate a config, open the model and every source once (one frame each), and try to bind the "
        "publisher and metrics ports. One line per finding; exit status 0 all good, 1 a problem, 2 bad config."))
    check.add_argument("--config", "-c", help="TOML config file (default: the built-in demo)")
    _add_log_level(check, "warning")
    check.set_defaults(handler=cmd_check)

    subscribe = commands.add_parser("subscribe", help="print detections as they arrive", formatter_class=defaults,
                                    description="Connect to a daemon's publisher and print one line per message.")
    subscribe.add_argument("endpoint", nargs="?", default=DEFAULT_PUBLISH_ENDPOINT, type=subscribe_endpoint,
                           help="the daemon's publish.endpoint: HOST:PORT or a ZeroMQ endpoint (tcp://, ipc://) "
                                "(default: %(default)s)")
    subscribe.add_argument("--source", action="append", default=[], help="only this source (repeatable; default: "
                                                                         "every source)")
    subscribe.add_argument("--count", type=int, default=0, help="exit after this many messages (default 0: never)")
    subscribe.add_argument("--events", action="store_true", help="print the analytics' events (zones, lines, "
                           "occupancy: topic events/SOURCE) instead of detections")
    subscribe.add_argument("--server-key", metavar="FILE", help="CURVE: the daemon's (or proxy's) public key, "
                           "its NAME.key (with --key)")
    subscribe.add_argument("--key", metavar="FILE", help="CURVE: this subscriber's NAME.key_secret; its NAME.key "
                           "must be in the daemon's authorised-keys folder")
    nats = subscribe.add_argument_group("NATS JetStream (what [[sinks]] kind = \"nats\" stores, from one daemon or "
                                        "a fleet)")
    nats.add_argument("--nats", metavar="URL", help="read the stream on this NATS server (nats://HOST:PORT) "
                      "instead of a daemon's ZeroMQ endpoint")
    nats.add_argument("--stream", default="STREAMD", help="the stream's name (the sink's stream key)")
    nats.add_argument("--subject", help="only these subjects, a filter such as streamd.*.door.events "
                      "(<subject_prefix>.<node>.<source>.events|detections|counts; default: every subject)")
    nats.add_argument("--durable", metavar="NAME", help="a durable consumer: a later run with this "
                      "name goes on after the last message this one acknowledged (default: an ephemeral consumer)")
    nats.add_argument("--new", action="store_true", help="only messages stored from now on (default: all the "
                      "stream holds; a durable consumer that exists goes on where it was)")
    nats.add_argument("--user", help="NATS user name")
    nats.add_argument("--password-file", metavar="FILE", help="a file whose first line is the NATS password")
    subscribe.set_defaults(handler=cmd_subscribe)

    from streamd.bench.arguments import add_bench_arguments  # noqa: PLC0415
    from streamd.bench.streams_arguments import add_streams_arguments  # noqa: PLC0415

    bench = commands.add_parser("bench", help="raw backend vs the full pipeline, same frames, one run",
                                description=(
                                    "Measure, in one run on the same video: the raw backend in a tight loop, "
                                    "the full pipeline reading the file flat out, and frame age at publish "
                                    "with the file paced at its native rate."))
    add_bench_arguments(bench)
    add_streams_arguments(bench)
    _add_log_level(bench, "warning")
    bench.set_defaults(handler=cmd_bench)

    keys = commands.add_parser("keys", help="create a CURVE key pair (NAME.key, NAME.key_secret)",
                               formatter_class=defaults, description=(
                                   "Create a ZeroMQ CURVE key pair with pyzmq's zmq.auth: NAME.key (public) and "
                                   "NAME.key_secret (private, mode 600). One for the daemon "
                                   "(publish.curve_secret_key), one per subscriber (its NAME.key goes into "
                                   "publish.curve_authorized_keys)."))
    keys.add_argument("name", help="the pair's name, e.g. server or the subscriber's host")
    keys.add_argument("--folder", default=".", help="where to write the two files")
    keys.set_defaults(handler=cmd_keys)

    proxy = commands.add_parser("proxy", help="fan in several daemons' detections to one endpoint",
                                formatter_class=defaults, description=(
                                    "ZeroMQ's XSUB/XPUB proxy: connect to every daemon's publisher, serve all their "
                                    "messages on one endpoint. With --key: CURVE on both sides."))
    proxy.add_argument("--upstream", action="append", required=True, type=subscribe_endpoint, metavar="ENDPOINT",
                       help="a daemon's publish.endpoint (repeatable)")
    proxy.add_argument("--bind", default="tcp://127.0.0.1:5560", help="the endpoint subscribers connect to")
    proxy.add_argument("--send-hwm", type=int, default=DEFAULT_SEND_HWM, help="messages queued per subscriber")
    proxy.add_argument("--key", metavar="FILE", help="the proxy's NAME.key_secret (CURVE)")
    proxy.add_argument("--upstream-key", action="append", default=[], metavar="FILE",
                       help="the daemons' public key (NAME.key): once for all, or once per --upstream in order "
                            "(default: none, no CURVE upstream)")
    proxy.add_argument("--authorized-keys", metavar="FOLDER", help="subscribers' NAME.key files (CURVE downstream)")
    _add_log_level(proxy, "info")
    proxy.set_defaults(handler=cmd_proxy)

    doctor = commands.add_parser("doctor", help="what this machine offers: GPU kind, CUDA, TensorRT, decoders, "
                                 "the path streamd will take", description=(
                                     "Report the GPU (integrated or discrete, what it can map), CUDA, TensorRT and "
                                     "ONNX Runtime versions, the decoders available (opencv, nvdec, jetson), Jetson "
                                     "board metrics, and which path the daemon takes here. No config needed; with "
                                     "--config, also per source. Always exit status 0."))
    doctor.add_argument("--config", "-c", help="also say which path this config takes")
    doctor.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    _add_log_level(doctor, "error")
    doctor.set_defaults(handler=cmd_doctor)

    commands.add_parser("quantize", help="INT8/FP16/FP32 models and TensorRT engines with an accuracy guard "
                                         "(streamd quantize --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_native_logs()
    if argv[:1] == ["quantize"]:
        return cmd_quantize(argparse.Namespace(), argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return args.handler(args)
    except ConfigFileError as error:
        print(f"streamd: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as error:
        print(f"streamd: invalid configuration: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyFileError as error:  # a key or folder given on the command line: bad input, like a config
        print(f"streamd: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except StreamdError as error:
        print(f"streamd: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
