"""gunicorn settings for qwc-service on Linux: ``gunicorn -c python:qwc_service.gunicorn_conf``.

It lives in the package (not next to the Dockerfile) so that the container and
a plain ``pip install 'qwc-service[postgres,production]'`` under systemd use
the same file by module name; nothing has to be copied anywhere.

Everything comes from the environment, like the rest of qwc-service:

- ``QWC_HOST`` / ``QWC_PORT``: where to listen (the same settings as
  ``qwc-service serve``; loopback by default, the container sets 0.0.0.0).
- ``QWC_WORKERS``: processes; default 2 x CPUs + 1, at most 8. CPUs are
  those this process may use (affinity and cgroup CPU quota), not the host's.
- ``QWC_THREADS``: threads per process (``gthread`` workers); default 4.
- ``QWC_WORKER_TIMEOUT`` (600 s), ``QWC_GRACEFUL_TIMEOUT`` (120 s),
  ``QWC_KEEPALIVE`` (75 s), ``QWC_MAX_REQUESTS`` (0 = never recycle).
- ``QWC_TRUSTED_PROXIES``: also decides whose ``X-Forwarded-Proto`` gunicorn
  believes, so the WSDL advertises ``https://`` behind a TLS proxy.
- ``QWC_LOG_LEVEL``: gunicorn's error log level too.

Anything else can still be given on gunicorn's command line or in
``GUNICORN_CMD_ARGS``; both win over this file.

Why these values: a receiveResponseXML can carry 100 MB of qbXML and the
answer to one QuickBooks query can take minutes, so a worker must never be
killed for being busy. With ``gthread`` the worker's main thread keeps the
heartbeat while request threads work, so ``timeout`` only catches a worker
that is truly stuck; it is generous anyway because parsing a huge document
holds the GIL for long stretches. ``graceful_timeout`` lets an upload in
flight finish on restart (a receiveResponseXML cut off turns a write job
``in_doubt``); give the service manager a longer stop timeout than this.
"""

from __future__ import annotations

import ipaddress
import math
import os

from qwc_service.config import ConfigError, Settings

# Read once, with the same validation (and QWC_*_FILE secrets) as the app.
_settings = Settings.from_env()


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:  # unset or empty (compose's "${QWC_WORKERS:-}") = the default
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def usable_cpus() -> int:
    """CPUs this process may run on: affinity mask, then a cgroup v2 CPU quota."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        count = os.process_cpu_count() or 1
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0)) or 1
    else:
        count = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def default_workers(cpus: int | None = None) -> int:
    return min(2 * (usable_cpus() if cpus is None else cpus) + 1, MAX_DEFAULT_WORKERS)


def trusted_networks(text: str) -> str:
    """``QWC_TRUSTED_PROXIES`` in the form gunicorn accepts (it rejects host bits in a CIDR)."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"QWC_TRUSTED_PROXIES: {item!r} is not an address or network") from None
    return ",".join(networks)


def bind_address(host: str, port: int) -> str:
    if host.startswith("unix:"):
        return host
    if ":" in host and not host.startswith("["):  # a bare IPv6 address
        host = f"[{host}]"
    return f"{host}:{port}"


MAX_DEFAULT_WORKERS = 8

# -- what to serve and where ------------------------------------------------

wsgi_app = "qwc_service.wsgi_app:application"
bind = [bind_address(_settings.host, _settings.port)]
proc_name = "qwc-service"
# Build the app in each worker after the fork: one database pool per process.
preload_app = False

# -- workers ----------------------------------------------------------------

worker_class = "gthread"
workers = _env_int("QWC_WORKERS", default_workers())
threads = _env_int("QWC_THREADS", 4)
timeout = _env_int("QWC_WORKER_TIMEOUT", 600)
graceful_timeout = _env_int("QWC_GRACEFUL_TIMEOUT", 120)
# QBWC keeps one connection open for a whole session and calls every few
# seconds; behind a proxy this must outlast the proxy's idle upstream
# connections (the Caddyfile keeps them 30 s) or the proxy may reuse a
# connection gunicorn is just closing.
keepalive = _env_int("QWC_KEEPALIVE", 75)
# Recycling bounds memory after huge documents; 0 = never (the default).
max_requests = _env_int("QWC_MAX_REQUESTS", 0, minimum=0)
max_requests_jitter = max_requests // 10
# The heartbeat files: tmpfs avoids stalls on a container's overlay file system.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

# -- request limits ---------------------------------------------------------
# The body limit is the app's (QWC_MAX_BODY_BYTES, checked before reading);
# these bound the request line and headers. QBWC's are short: POST /qbwc,
# GET /qbwc?wsdl, a dozen headers.

limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# -- proxies ----------------------------------------------------------------
# gunicorn leaves REMOTE_ADDR alone; the app reads X-Forwarded-For itself,
# believing only QWC_TRUSTED_PROXIES. gunicorn only needs to know whose
# X-Forwarded-Proto to believe, and it is the same set ("" = no one).

forwarded_allow_ips = trusted_networks(_settings.trusted_proxies)
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}

# -- logging ----------------------------------------------------------------
# gunicorn never logs bodies. The access log names the peer (%(h)s, the proxy
# when there is one), the client address the app used for lockouts (set on
# SOAP calls only), the request line (path and query, e.g. ?wsdl; qwc-service
# takes nothing secret in a URL), status, size, duration and user agent. No
# header that could carry a credential (Authorization, Cookie) and not %(u)s.

accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
access_log_format = '%(h)s %({qwc.client_address}e)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

# gunicorn 25+ opens a control socket under $HOME by default; we don't use it.
control_socket_disable = True


# -- metrics across workers ---------------------------------------------------
# Each worker is its own process, so Prometheus counters must be shared
# through prometheus_client's multiprocess mode: every worker writes its
# values to files in PROMETHEUS_MULTIPROC_DIR and whichever worker answers a
# scrape sums them (qwc_service.metrics does that when the variable is set).
# Set it here, in the master before any worker forks, to a fresh private
# directory unless the operator chose one; a chosen one is emptied of the
# previous run's files at start.

_METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_created_metrics_dir: str | None = None


def on_starting(server):  # type: ignore[no-untyped-def]
    global _created_metrics_dir
    import glob
    import tempfile

    directory = os.environ.get(_METRICS_DIR_VARIABLE, "").strip()
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)
    else:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        directory = _created_metrics_dir = tempfile.mkdtemp(prefix="qwc-service-metrics-", dir=shm)
        os.environ[_METRICS_DIR_VARIABLE] = directory
    server.log.debug("metrics of all workers in %s", directory)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    if os.environ.get(_METRICS_DIR_VARIABLE):
        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    # In the worker process, as it leaves: let its webhook worker finish the delivery in hand.
    from qwc_service import wsgi_app

    wsgi_app.shutdown()


def on_exit(server):  # type: ignore[no-untyped-def]
    if _created_metrics_dir:
        import shutil

        shutil.rmtree(_created_metrics_dir, ignore_errors=True)


def when_ready(server):  # type: ignore[no-untyped-def]
    # From server.cfg: the command line may have overridden this file.
    cfg = server.cfg
    server.log.info(
        "qwc-service: %d workers x %d threads on %s; trusted proxies: %s",
        cfg.workers,
        cfg.threads,
        ", ".join(cfg.bind),
        ",".join(cfg.forwarded_allow_ips) or "none",
    )
