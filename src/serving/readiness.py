"""Say that the server serves only once it does: LitServe starts its workers and then uvicorn, and
the port answers seconds after `run` is called (a model to load in every worker)."""

import threading
import urllib.error
import urllib.request

POLL_SECONDS = 0.2


def local_address(host: str) -> str:
    """Where this machine reaches a server listening on `host` (all addresses: the loopback one)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def announce_when_ready(host: str, port: int, api_key: str | None, message: str) -> threading.Event:
    """Print `message` once GET /health answers 200 (every worker has loaded the model), from a
    daemon thread; setting the returned event stops the waiting (the server ended first)."""
    stop = threading.Event()
    request = urllib.request.Request(f"http://{local_address(host)}:{port}/health")
    if api_key:
        request.add_header("X-API-Key", api_key)

    def wait() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    if answer.status == 200:
                        print(message, flush=True)
                        return
            except (urllib.error.URLError, OSError):  # not listening yet, or 503 while workers load
                pass
            stop.wait(POLL_SECONDS)

    threading.Thread(target=wait, name="announce-when-ready", daemon=True).start()
    return stop
