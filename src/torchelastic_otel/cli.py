"""The ``torchelastic-otel`` command.

``torchelastic-otel timeline`` shows a job's timeline (restart cycles, nodes,
workers, failures, rendezvous) from OTLP JSON files (what the OpenTelemetry
Collector's ``file`` exporter writes, or ``make demo``'s ``build/demo/otlp.jsonl``),
or live: it receives OTLP (gRPC and HTTP, on 127.0.0.1 unless ``--host`` says
otherwise) for the duration of a job, behind a collector or directly.

Examples::

    torchelastic-otel timeline build/demo/otlp.jsonl --html timeline.html
    torchelastic-otel timeline otlp.jsonl --node node-0042 --width 160
    torchelastic-otel timeline --listen --grpc-port 4317 --http-port 4318 --idle-exit 10
"""

import argparse
import gc
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from torchelastic_otel.otlp_data import Received

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchelastic-otel", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tl = sub.add_parser(
        "timeline",
        help="show a job's rendezvous timeline",
        description="Show a job's timeline: restart cycles, nodes by time, rendezvous, "
        "worker lifetimes, failures (root cause first), nodes missing, late or still waiting. "
        "Jobs of more than 16 nodes are summarised; --node draws chosen nodes' lanes.",
    )
    tl.add_argument("files", nargs="*", type=Path, help="OTLP JSON files (one request per line)")
    tl.add_argument("--listen", action="store_true", help="receive OTLP (gRPC and HTTP) instead")
    tl.add_argument(
        "--host",
        default="127.0.0.1",
        help="with --listen: the address to listen on (default 127.0.0.1; 0.0.0.0: every one)",
    )
    tl.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (0: none)")
    tl.add_argument("--http-port", type=int, default=4318, help="OTLP/HTTP port (0: none)")
    tl.add_argument(
        "--idle-exit",
        type=float,
        default=0.0,
        help="with --listen: stop this many seconds after the last data, unless a node still "
        "waits in a rendezvous (0: run until Ctrl-C or SIGTERM)",
    )
    tl.add_argument("--duration", type=float, default=0.0, help="with --listen: stop after S s")
    tl.add_argument(
        "--max-items",
        type=_non_negative_int,
        default=DEFAULT_MAX_ITEMS,
        help="with --listen: keep at most this many log records, spans and metric points "
        f"(together; ~4 KB each in memory; default {DEFAULT_MAX_ITEMS:,}, about a 1,000-node "
        "job with a few restarts; 0: no limit); later ones are counted and dropped",
    )
    tl.add_argument(
        "--max-request-mib",
        type=_positive_float,
        default=16.0,
        help="with --listen: refuse (413) an HTTP body larger than this on the wire (default 16)",
    )
    tl.add_argument(
        "--max-decompressed-mib",
        type=_positive_float,
        default=32.0,
        help="with --listen: refuse (413; gRPC: RESOURCE_EXHAUSTED) a request larger than this "
        "once decompressed (default 32)",
    )
    tl.add_argument("--run-id", help="only this run_id")
    tl.add_argument("--html", type=Path, help="also write a self-contained HTML page here")
    tl.add_argument("--save", type=Path, help="with --listen: save what arrived as OTLP JSON")
    tl.add_argument("--width", type=int, help="width to draw for (also when piped)")
    tl.add_argument(
        "--node",
        action="append",
        metavar="HOST|RANK",
        help="also draw this node's lanes (host, host:pid or rank; repeatable)",
    )
    view = tl.add_mutually_exclusive_group()
    view.add_argument("--summary", action="store_true", help="summarise, whatever the node count")
    view.add_argument(
        "--lanes", action="store_true", help="draw every node's lanes, whatever the node count"
    )
    return parser


DEFAULT_MAX_ITEMS = 250_000


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``torchelastic-otel``."""
    args = _parser().parse_args(argv)
    try:
        from rich.console import Console
    except ImportError:
        # A training node installs the package without the viewer's dependencies.
        print(
            "torchelastic-otel timeline needs rich: pip install 'torchelastic-otel[timeline]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.width is not None and args.width < 40:
        print("torchelastic-otel: error: --width must be at least 40", file=sys.stderr)
        return EXIT_USAGE
    # A width given is a width kept: rich would otherwise draw for 80 columns when piped.
    console = Console(stderr=False, width=args.width)
    err = Console(stderr=True, soft_wrap=True)
    if args.listen == bool(args.files):
        err.print("[red]error:[/red] give OTLP JSON files, or --listen (not both)")
        return EXIT_USAGE
    from torchelastic_otel.otlp_data import OtlpFileError

    try:
        received = _listen(args, err) if args.listen else _read(args.files)
    except OtlpFileError as e:
        err.print(f"[red]error:[/red] {e}")
        return EXIT_USAGE
    except OSError as e:
        err.print(f"[red]error:[/red] {e}")
        return EXIT_USAGE
    return _show(received, args, console)


def _read(paths: list[Path]) -> "Received":
    from torchelastic_otel.timeline.model import load

    return load(paths)


def _listen(args: argparse.Namespace, err: "Console") -> "Received":
    from contextlib import ExitStack

    from torchelastic_otel.otlp_data import Received, write_otlp_json
    from torchelastic_otel.receiver import (
        Limits,
        OtlpGrpcReceiver,
        OtlpHttpReceiver,
        PortInUseError,
    )

    if not args.grpc_port and not args.http_port:
        raise OSError("--grpc-port and --http-port are both 0: nothing to listen on")
    received = Received(max_items=args.max_items)
    limits = Limits(
        max_request_bytes=int(args.max_request_mib * (1 << 20)),
        max_decompressed_bytes=int(args.max_decompressed_mib * (1 << 20)),
    )
    with ExitStack() as stack:
        # Before the receivers listen: a sender (or a test) that sees the port open
        # may SIGTERM us at once, and the default action would kill the process
        # without saving what arrived.
        stop, reason = stack.enter_context(_stop_on_sigterm())
        where = []
        try:
            if args.grpc_port:
                grpc = stack.enter_context(
                    OtlpGrpcReceiver(args.grpc_port, received, host=args.host, limits=limits)
                )
                where.append(f"gRPC {grpc.endpoint}")
            if args.http_port:
                http = stack.enter_context(
                    OtlpHttpReceiver(args.http_port, received, host=args.host, limits=limits)
                )
                where.append(f"HTTP {http.endpoint}")
        except PortInUseError as e:
            raise OSError(f"{e}: choose another with --grpc-port / --http-port") from None
        if not err.is_terminal:
            # No spinner to show it: say where to send data, once, for logs and scripts.
            err.print(f"receiving OTLP on {', '.join(where)}", highlight=False)
        why = _receive(args, received, where, err, stop, reason)
        err.print(f"{why}: {len(received.logs)} records, {len(received.spans)} spans received")
        dropped = {k: v for k, v in received.dropped.items() if v}
        if dropped:
            err.print(
                f"kept the first {args.max_items:,} items (--max-items); dropped the later "
                + ", ".join(f"{v:,} {k}" for k, v in dropped.items()),
                highlight=False,
            )
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        write_otlp_json(received, args.save)
        err.print(f"saved to {args.save}")
    return received


@contextmanager
def _stop_on_sigterm() -> Iterator[tuple[threading.Event, list[str]]]:
    """SIGTERM sets the event (and the reason) instead of killing the process."""
    import signal

    stop = threading.Event()
    reason = ["stopped"]

    def on_sigterm(signum: int, frame: object) -> None:
        reason[0] = "SIGTERM"
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield stop, reason
    finally:
        signal.signal(signal.SIGTERM, previous)


def _receive(
    args: argparse.Namespace,
    received: "Received",
    where: list[str],
    err: "Console",
    stop: threading.Event,
    reason: list[str],
) -> str:
    """Receive until told to stop (Ctrl-C, SIGTERM), --duration or --idle-exit; say why."""
    from contextlib import nullcontext

    from torchelastic_otel.timeline.model import RendezvousWatch

    watch = RendezvousWatch()
    started = time.monotonic()
    last_count, last_change = 0, started
    status = err.status("") if err.is_terminal else nullcontext()
    try:
        with status as spinner:
            while not stop.is_set():
                # Dropped items count as data: a full receiver is not an idle one.
                count = len(received.logs) + len(received.spans) + sum(received.dropped.values())
                now = time.monotonic()
                if count != last_count:
                    last_count, last_change = count, now
                waiting = watch.update(received.logs)
                if spinner is not None:
                    wait = f", {len(waiting)} node(s) waiting in a rendezvous" if waiting else ""
                    lost = sum(received.dropped.values())
                    full = f", {lost:,} dropped (--max-items)" if lost else ""
                    spinner.update(
                        f"receiving OTLP on {', '.join(where)} — {len(received.logs)} records, "
                        f"{len(received.spans)} spans{wait}{full} (Ctrl-C to stop)"
                    )
                if args.duration and now - started >= args.duration:
                    return f"--duration {args.duration:g} s"
                idle = bool(args.idle_exit and count and now - last_change >= args.idle_exit)
                if idle and not waiting:
                    return f"no data for {args.idle_exit:g} s"
                stop.wait(0.2)
    except KeyboardInterrupt:
        reason[0] = "interrupted"
    return reason[0]


def _show(received: "Received", args: argparse.Namespace, console: "Console") -> int:
    from torchelastic_otel.timeline.model import build_timelines
    from torchelastic_otel.timeline.terminal import print_timelines

    jobs = build_timelines(received, run_id=args.run_id)
    # What was read and built lives until the command exits and holds no cycles
    # worth collecting; at 10,000 nodes it is ~50 million objects, and each of the
    # collector's full passes over them (set off while drawing) took ~0.5 s.
    gc.freeze()
    summary = True if args.summary else (False if args.lanes else None)
    print_timelines(jobs, console, width=args.width, summary=summary, nodes=args.node)
    if args.html:
        from torchelastic_otel.timeline.html import write_html

        path = write_html(jobs, args.html).resolve()
        console.print(f"HTML timeline: {path}", soft_wrap=True, highlight=False)
    return 0 if jobs else 1


if __name__ == "__main__":
    sys.exit(main())
