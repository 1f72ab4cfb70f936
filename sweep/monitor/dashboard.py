"""The live sweep dashboard: a Panel page with the report's views, refreshed as runs finish.

Each browser session re-reads the store's committed records every ``refresh_seconds`` and
rebuilds the views when a run was committed or recorded as failed (or the package files
changed), so the page follows a running sweep without reloading. It only reads the store,
so it can watch a sweep from another process, or a copy of the store.

- ``serve_dashboard(...)``: blocking, for ``sweep dashboard``.
- ``start_dashboard(...) -> (url, stop)``: in a background thread; ``beside_sweep`` is the
  ``run_sweep(on_start=...)`` hook that shows it beside the Dask dashboard while a sweep runs.
"""

from __future__ import annotations

import datetime as _dt
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import SweepStart

__all__ = ["DEFAULT_REFRESH_SECONDS", "dashboard_app", "serve_dashboard", "start_dashboard", "beside_sweep"]

DEFAULT_REFRESH_SECONDS = 5.0
log = logging.getLogger("sweep.dashboard")


def _live(store: str) -> Any:
    """The sweep running on ``store`` now, from its status document (None: no document)."""
    from ..store import Store
    from .live import live_sweep

    with Store.open(str(store), mode="r") as st:
        return live_sweep(st.status_document())


def _fingerprint(store: str, packages_dir: str | None, live: Any = None) -> tuple[Any, ...]:
    """What changes when the views must change: run statuses, the package files and which
    runs a running sweep has under way (not their steps: the running-now pane shows those)."""
    from .status import read_runs

    runs = read_runs(store)
    under_way = (
        frozenset(str(r.get("run_id")) for r in live.running) if live is not None and live.active else None
    )
    pkg: tuple[Any, ...] = ()
    if packages_dir is not None:
        d = Path(packages_dir)
        pkg = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in d.glob("*.json")))
    return tuple(zip(runs.index, runs["status"], runs["failure_class"], strict=True)), pkg, under_way


def dashboard_app(
    store: str,
    packages_dir: str | None = None,
    *,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    workers: int | None = None,
    reference_files: Sequence[str] | None = None,
) -> Callable[[], Any]:
    """A Panel app factory (one page per browser session) showing the sweep in ``store``."""
    import panel as pn

    from .status import load_sweep
    from .views import report_layout, running_now_html

    store, packages_dir = str(store), (None if packages_dir is None else str(packages_dir))

    def make() -> Any:
        header = pn.pane.Markdown("", width=900)
        running = pn.pane.HTML("", width=1240)  # what runs now: every refresh, steps included
        body = pn.Column()
        seen: dict[str, Any] = {"fingerprint": None}

        def refresh() -> None:
            now = _dt.datetime.now(_dt.UTC).strftime("%H:%M:%S UTC")
            try:
                live = _live(store)
                running.object = running_now_html(live)
                fp = _fingerprint(store, packages_dir, live)
                if fp != seen["fingerprint"]:
                    data = load_sweep(store, packages_dir, workers=workers, reference_files=reference_files)
                    layout = report_layout(data, title="Sweep dashboard", running_pane=False)
                    body.objects = list(layout.objects)
                    seen["fingerprint"] = fp
                header.object = (
                    f"**Live** · store `{store}` · checked every {refresh_seconds:g} s · last check {now}"
                )
            except Exception as exc:  # keep serving; say what is wrong on the page
                log.warning("dashboard refresh failed: %s", exc)
                header.object = f"**Live** · store `{store}` · last check {now} failed: {exc}"

        refresh()
        pn.state.add_periodic_callback(refresh, period=int(refresh_seconds * 1000))
        return pn.Column(header, running, body)

    return make


def _free_port(address: str) -> int:
    """A port free on ``address`` now (the server needs it up front for its origin allowlist)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _origins(address: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    hosts = {address, "localhost", "127.0.0.1"} if address in ("127.0.0.1", "localhost") else {address}
    if address in ("0.0.0.0", ""):
        hosts = {socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1"}
    return sorted(f"{h}:{port}" for h in hosts) + list(extra)


def _server(
    store: str,
    packages_dir: str | None,
    *,
    port: int,
    address: str,
    refresh_seconds: float,
    workers: int | None,
    allow_origin: Sequence[str],
    loop: Any = None,
    reference_files: Sequence[str] | None = None,
) -> Any:
    import panel as pn

    port = port or _free_port(address)
    return pn.serve(
        {
            "/": dashboard_app(
                store,
                packages_dir,
                refresh_seconds=refresh_seconds,
                workers=workers,
                reference_files=reference_files,
            )
        },
        port=port,
        address=address,
        websocket_origin=_origins(address, port, allow_origin),
        show=False,
        start=False,
        threaded=False,
        title="Sweep dashboard",
        verbose=False,
        loop=loop,
    )


def _url(address: str, port: int) -> str:
    host = "localhost" if address in ("0.0.0.0", "") else address
    return f"http://{host}:{port}/"


def serve_dashboard(
    store: str,
    packages_dir: str | None = None,
    *,
    port: int = 0,
    address: str = "127.0.0.1",
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    workers: int | None = None,
    allow_origin: Sequence[str] = (),
    on_ready: Callable[[str], None] | None = None,
    reference_files: Sequence[str] | None = None,
) -> None:
    """Serve the dashboard until interrupted; ``on_ready(url)`` is called once it listens."""
    server = _server(
        str(store),
        packages_dir,
        port=port,
        address=address,
        refresh_seconds=refresh_seconds,
        workers=workers,
        allow_origin=allow_origin,
        reference_files=reference_files,
    )
    server.start()
    if on_ready is not None:
        on_ready(_url(address, server.port))
    try:
        server.io_loop.start()
    finally:
        server.stop()


def start_dashboard(
    store: str,
    packages_dir: str | None = None,
    port: int = 0,
    *,
    address: str = "127.0.0.1",
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    workers: int | None = None,
) -> tuple[str, Callable[[], None]]:
    """Serve the dashboard from a daemon thread; returns its URL and a ``stop()`` function.

    For the engine: ``url, stop = start_dashboard(store, packages_dir)``, print ``url``
    beside the Dask dashboard's, call ``stop()`` when the sweep ends (idempotent).
    """
    from tornado.ioloop import IOLoop

    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        loop = IOLoop(make_current=False)
        try:
            server = _server(
                str(store),
                packages_dir,
                port=port,
                address=address,
                refresh_seconds=refresh_seconds,
                workers=workers,
                allow_origin=(),
                loop=loop,
            )
            server.start()
            box.update(server=server, loop=loop, url=_url(address, server.port))
        except BaseException as exc:  # report to the caller instead of dying silently
            box["error"] = exc
            ready.set()
            loop.close(all_fds=True)
            return
        ready.set()
        loop.start()
        server.stop()
        loop.close(all_fds=True)

    thread = threading.Thread(target=run, name="sweep-dashboard", daemon=True)
    thread.start()
    ready.wait(timeout=60)
    if "error" in box:
        raise box["error"]
    if "url" not in box:
        raise RuntimeError("the sweep dashboard did not start within 60 s")

    def stop() -> None:
        loop = box.get("loop")
        if loop is not None and thread.is_alive():
            loop.add_callback(loop.stop)
            thread.join(timeout=10)

    return box["url"], stop


def beside_sweep(start: SweepStart) -> Callable[[], None] | None:
    """An ``on_start`` hook of ``run_sweep``: serve this dashboard while the sweep runs and say
    its address; returns its ``stop()`` (None when it could not start: the sweep matters more)."""
    try:
        url, stop = start_dashboard(start.store, start.packages_dir, workers=start.n_workers)
    except Exception as exc:
        start.say(f"sweep: --dashboard: could not start the sweep dashboard: {exc}")
        return None
    start.say(f"sweep: sweep dashboard: {url}")
    return stop
