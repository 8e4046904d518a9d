"""Say that the server serves only once it does: LitServe starts its workers and then uvicorn, and
the port answers seconds after `run` is called (a model to load in every worker)."""

import os
import ssl
import threading
import urllib.error
import urllib.request

POLL_SECONDS = 0.2


def url_host(host: str) -> str:
    """`host` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def local_address(host: str) -> str:
    """Where this machine reaches a server listening on `host` (all addresses: the loopback one)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return url_host(host)


def scheme() -> str:
    """https when LitServe serves TLS (its LIGHTNING_CERT_PEM and LIGHTNING_KEY_FILE are set), else http."""
    return "https" if os.environ.get("LIGHTNING_CERT_PEM") and os.environ.get("LIGHTNING_KEY_FILE") else "http"


def announce_when_ready(host: str, port: int, api_key: str | None, message: str) -> threading.Event:
    """Print `message` once GET /health answers 200 (every worker has loaded the model), from a
    daemon thread; setting the returned event stops the waiting (the server ended first)."""
    stop = threading.Event()
    request = urllib.request.Request(f"{scheme()}://{local_address(host)}:{port}/health")
    if api_key:
        request.add_header("X-API-Key", api_key)
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]  # never via $HTTP_PROXY
    if scheme() == "https":  # its certificate names the public host, not the loopback address asked here
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    direct = urllib.request.build_opener(*handlers)

    def wait() -> None:
        while not stop.is_set():
            try:
                with direct.open(request, timeout=2) as answer:
                    if answer.status == 200 and not stop.is_set():
                        print(message, flush=True)
                        return
            except urllib.error.HTTPError as error:  # 503 while the workers load
                error.close()
            except Exception:  # not listening yet, or a connection cut while starting
                pass
            stop.wait(POLL_SECONDS)

    threading.Thread(target=wait, name="announce-when-ready", daemon=True).start()
    return stop
