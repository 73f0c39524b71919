"""`python -m flysim`: run the simulator with uvicorn."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
from pathlib import Path

import uvicorn

from .app import create_app
from .latency import PROFILES
from .sim import SimConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="flysim", description="Local simulator of the Fly.io Machines API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4280, help="0 picks a free port")
    p.add_argument("--token", default=None, help="API token (else $FLYSIM_TOKEN, else a random one is printed)")
    p.add_argument("--org", action="append", dest="orgs", default=None, help="org slug to seed (repeatable)")
    p.add_argument("--state-file", default=None, help="persist state as JSON here (reloaded on start)")
    p.add_argument("--latency", choices=sorted(PROFILES), default="fast")
    p.add_argument("--rate-limit", choices=["on", "off"], default="on")
    p.add_argument("--images", default=None, metavar="PATH",
                   help="image catalogue (JSON) layered over the built-in one; see docs/flysim.md, 'Image catalogue'")
    p.add_argument("--ready-file", default=None, help='write {"url", "pid"} here once listening')
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets
    # whose proto says TCP; without it every keep-alive response waits ~40 ms
    # for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """Announces itself only once the socket is really serving."""

    def __init__(self, config: uvicorn.Config, url: str, ready_file: str | None) -> None:
        super().__init__(config)
        self.url = url
        self.ready_file = ready_file

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        print(f"flysim listening on {self.url}", flush=True)
        if self.ready_file:
            path = Path(self.ready_file)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
            os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    token = args.token or os.environ.get("FLYSIM_TOKEN")
    if not token:
        token = secrets.token_urlsafe(32)
        # The one place a token is shown: the operator needs the generated one.
        print(f"flysim token: {token}", flush=True)
    config = SimConfig(
        token=token,
        orgs=args.orgs or ["personal"],
        latency=args.latency,
        state_file=args.state_file,
        rate_limit=args.rate_limit == "on",
        images=args.images,
    )
    try:
        app = create_app(config)
    except ValueError as exc:  # a bad --images catalogue (or state file): say what, no traceback
        print(f"flysim: {exc}", file=sys.stderr, flush=True)
        return 2
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]
    uv_config = uvicorn.Config(app, log_level=args.log_level, access_log=False, timeout_graceful_shutdown=2)
    server = _Server(uv_config, url_for(args.host, port), args.ready_file)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # pragma: no cover
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
