"""A transport URL (oslo.messaging's ``rabbit://user:password@host:port,.../vhost?query``) read as its
rabbit driver reads it: the hosts, TLS and the TLS files its query names.

Called by haven.evidence.broker (each look), haven.explain.config (``[diagnosis] transport_url`` checked
when the configuration is read) and the control plane's AMQP probe (``transport_url_env``: its TLS, checked
when ``haven serve`` starts its control plane); no I/O but the files' check, and importing it costs nothing.

oslo.messaging's rabbit driver reads every option of its ``[oslo_messaging_rabbit]`` group from the URL's
query too (``oslo_messaging._drivers.common.ConfigOptsProxy``), so ``rabbit://...?ssl=1&ssl_ca_file=PATH``
is one URL for Nova, haven's notification listener and haven's look at the broker; a TLS option set only
in the services' ``[oslo_messaging_rabbit]`` must be in haven's URL too.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_TRUE = frozenset({"1", "true", "yes", "on"})


def uses_tls(url: str) -> bool:
    """The transport URL asks for TLS (``?ssl=1``, ``?ssl=true``: oslo.messaging's rabbit driver reads its
    query as driver options). A bus whose TLS is set only in the services' ``[oslo_messaging_rabbit]``
    needs ``?ssl=1`` in haven's URL too, or every look fails its handshake; and its ``ssl_ca_file`` when
    the broker's certificate is from a private CA, or every look fails its verification."""
    values = parse_qs(urlsplit(url).query).get("ssl", [])
    return any(v.strip().lower() in _TRUE for v in values)


# oslo.messaging's [oslo_messaging_rabbit] options for TLS files (the module docstring)
TLS_FILES = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")


def tls_files(url: str) -> dict[str, str]:
    """The TLS files the transport URL's query names, by option (several values joined by commas, as
    oslo.messaging's TransportURL joins them)."""
    query = parse_qs(urlsplit(url).query)
    return {name: ",".join(query[name]) for name in TLS_FILES if query.get(name)}


def tls_options(url: str, address: str | None) -> bool | dict[str, object]:
    """py-amqp's ``ssl`` for a connection to ``address`` (``host:port``), as oslo.messaging's rabbit driver
    builds its own (``Connection._fetch_ssl_params``) and kombu completes it: False without ``ssl=1``; with
    ``ssl_ca_file`` the broker's certificate must chain to that CA and name ``address``'s host (None: no
    name, the chain alone; ``tls_for`` always gives one); a client certificate when ``ssl_cert_file``
    names one; else True (the system's CAs, no name check: oslo sends no server name then, and kombu adds
    one only to a dict that has the key)."""
    if not uses_tls(url):
        return False
    files = tls_files(url)
    options: dict[str, object] = {}
    if "ssl_cert_file" in files:
        options["certfile"] = files["ssl_cert_file"]
        if "ssl_key_file" in files:
            options["keyfile"] = files["ssl_key_file"]
    if "ssl_ca_file" in files:
        hostname = _hostname(address) if address else None
        options.update(ca_certs=files["ssl_ca_file"], cert_reqs=ssl.CERT_REQUIRED, server_hostname=hostname)
    return options or True


def tls_for(url: str, address: str | None = None) -> bool | dict[str, object]:
    """py-amqp's ``ssl`` for a connection to ``address`` (``host:port``; None: the URL's first host) as
    Nova's oslo.messaging and kombu make it: with ``ssl_ca_file`` the broker's name is always checked,
    against the host connected to. oslo.messaging 18.3.1 names the URL's host when it has one and gives
    ``server_hostname=None`` with several, and kombu 5.7 (``transport/pyamqp.py``, establish_connection)
    puts the host it connects to in that None, after turning ``localhost`` into ``127.0.0.1``: so with
    several hosts a ``localhost`` is checked as ``127.0.0.1``, with one as ``localhost``. A certificate
    that does not name the host is refused, as Nova refuses it: accepting it would say RabbitMQ is
    reachable while Nova cannot connect, and send the password to any server holding a certificate from
    that CA. (kombu fills the None in once per connection, on its first host tried; failing over, it
    checks that first name again: not mirrored, the host connected to is the name a certificate must
    carry.)"""
    every = [one[0] for one in hosts(url)]
    target = address or (every[0] if every else None)
    if target and len(every) > 1 and _hostname(target) == "localhost":
        target = "127.0.0.1:" + target.rpartition(":")[2]
    return tls_options(url, target)


def tls_problem(url: str, reading: bool = False) -> str | None:
    """What is wrong with the TLS files the transport URL names, in words naming the option (None when
    nothing is): checked when the configuration is read, so a missing CA is not a lasting false DOWN.
    ``reading``: this process is the one that will read the files (haven serve starting its control
    plane), so a file it may not read is a problem too; an operator's command, as another user, lets it be
    (haven serve's own user reads it)."""
    files = tls_files(url)
    if files and not uses_tls(url):
        return f"{', '.join(files)} without ssl=1: oslo.messaging reads the files only with ssl=1"
    if "ssl_key_file" in files and "ssl_cert_file" not in files:
        return "ssl_key_file without ssl_cert_file (the client certificate it is the key of)"
    for name, path in files.items():
        try:
            found = Path(path).is_file()
        except OSError as exc:  # Python 3.11 raises for a folder on its path this user cannot enter
            shut = isinstance(exc, PermissionError)
            why = " (a folder on its path this user may not enter)" if shut else ""
            return f"{name}: cannot look for {path}: {exc.strerror or exc}{why}"
        if not found:
            return f"{name}: no such file: {path}"
    try:
        if "ssl_ca_file" in files:
            ssl.create_default_context(cafile=files["ssl_ca_file"])
        if "ssl_cert_file" in files:
            context = ssl.create_default_context()
            context.load_cert_chain(files["ssl_cert_file"], files.get("ssl_key_file"))
    except ssl.SSLError as exc:
        return f"{', '.join(files)}: not a usable certificate, CA or key: {exc}"
    except OSError as exc:
        if reading:  # every look or probe would fail on it: restarts of a healthy service (review R2-R2)
            named = _unreadable(files) or ", ".join(files)
            return f"{named}: cannot be read by this user: {exc.strerror or exc}"
        return None  # not readable by this user (an operator's command): haven serve's own user reads it
    return None


def _unreadable(files: dict[str, str]) -> str:
    """The first option whose file this user cannot open, or "" (the error was another file's)."""
    for name, path in files.items():
        try:
            with open(path, "rb"):
                pass
        except OSError:
            return name
    return ""


def _hostname(address: str) -> str:
    """``host`` of ``host:port`` (an IPv6 literal without its brackets, as a certificate names it)."""
    return address.rpartition(":")[0].removeprefix("[").removesuffix("]")


def hosts(url: str) -> list[tuple[str, str, str, str]]:
    """Each host of a transport URL as (host:port, user, password, vhost), in the URL's order."""
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) or "/"
    found = []
    for one in parts.netloc.split(","):
        if not one.strip():
            continue  # a trailing comma: oslo.messaging skips it too
        credentials, _, address = one.rpartition("@")
        user, _, password = credentials.partition(":")
        host, port = address, "5672"
        if address.startswith("["):  # an IPv6 literal: [::1]:5672
            host, _, rest = address.partition("]")
            host, port = host + "]", rest.removeprefix(":") or port
        elif ":" in address:
            host, _, port = address.rpartition(":")
        found.append((f"{host}:{port}", unquote(user or "guest"), unquote(password or "guest"), vhost))
    return found
