"""Checks of the execution options that need no connection: a scheduler address, a SLURM
cluster-config file, and the client's TLS certificates for a ``tls://`` scheduler. Each
problem is an ``OptionError`` (exit 2) naming the option, raised before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import OptionError
from engine.spec.readers import INPUT_LIMIT, ReadProblem, check_file

SLURM_KEYS: dict[str, tuple[type, ...]] = {
    "queue": (str,), "account": (str,), "walltime": (str,), "cores": (int,), "memory": (str,),
    "job_extra_directives": (list,), "job_script_prologue": (list,), "interface": (str,), "scheduler_host": (str,),
    "local_directory": (str,), "log_directory": (str,), "compiledir": (str,), "compiledir_per_node": (bool,), "python": (str,),
    "death_timeout": (int, float),
}
TLS_CONFIG = {"ca": "distributed.comm.tls.ca-file", "cert": "distributed.comm.tls.client.cert",
              "key": "distributed.comm.tls.client.key"}
_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|inproc)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def load_cluster_config(path: str | Path) -> dict[str, Any]:
    """Read a SLURM cluster-config file (YAML mapping, optionally under a ``slurm:`` key)."""
    from engine.spec.yamlio import read_yaml

    p = Path(path)
    raw = read_yaml(p, error=_config_error)
    if raw is None:
        raw = {}
    if isinstance(raw, dict) and set(raw) == {"slurm"}:
        raw = raw["slurm"]
    if not isinstance(raw, dict):
        raise OptionError(f"cluster config {p} must be a mapping of SLURM settings ({', '.join(SLURM_KEYS)})")
    unknown = sorted(set(raw) - set(SLURM_KEYS))
    if unknown:
        raise OptionError(f"cluster config {p}: unknown keys {', '.join(map(str, unknown))}; known: {', '.join(SLURM_KEYS)}")
    for key, value in raw.items():
        types = SLURM_KEYS[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types)
            raise OptionError(f"cluster config {p}: {key} = {value!r} should be a {want}")
        if key == "cores" and value < 1:
            raise OptionError(f"cluster config {p}: cores = {value} should be at least 1")
        if key == "death_timeout" and not 0 < value < float("inf"):
            raise OptionError(f"cluster config {p}: death_timeout = {value} should be a positive number of seconds")
        if isinstance(value, list) and not all(isinstance(x, str) for x in value):
            raise OptionError(f"cluster config {p}: {key} should be a list of strings")
    return dict(raw)


def _config_error(file: str, where: str, message: str) -> OptionError:
    if message.startswith("file not found"):
        return OptionError(f"cluster config {file} not found; give an existing YAML file to --cluster-config")
    return OptionError(f"cluster config {file}: {where + ': ' if where else ''}{message}")


def normalise_address(address: str) -> str:
    m = _ADDRESS.match(address.strip())
    if not m or not 0 < int(m.group(3)) < 65536:
        raise OptionError(f"scheduler address {address!r} is not of the form tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786)")
    return f"{m.group(1) or 'tcp'}://{m.group(2)}:{m.group(3)}"


@dataclass(frozen=True)
class TLSFiles:
    """The client's certificates for a ``tls://`` scheduler (``--tls-ca``, ``--tls-cert``, ``--tls-key``).

    Paths to PEM files: the CA that signed the cluster's certificates, this client's certificate
    and its private key (``key`` may be left out when the certificate file holds the key too).
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def of(cls, ca: str | Path | None, cert: str | Path | None, key: str | Path | None) -> TLSFiles | None:
        """The given options (``None`` when none is given); paths are made absolute."""
        files = [None if x is None else str(Path(x).expanduser().absolute()) for x in (ca, cert, key)]
        return cls(*files) if any(files) else None

    def security(self):  # noqa: ANN201 - a distributed.security.Security
        """The client's ``Security``: mutual TLS with these files, plain TCP refused."""
        from distributed.security import Security

        return Security(tls_ca_file=self.ca, tls_client_cert=self.cert, tls_client_key=self.key, require_encryption=True)

    def dask_config(self) -> dict[str, Any]:
        """The same settings as dask config keys (read by ``Security()`` when no object is passed)."""
        return {TLS_CONFIG["ca"]: self.ca, TLS_CONFIG["cert"]: self.cert, TLS_CONFIG["key"]: self.key,
                "distributed.comm.require-encryption": True}


def check_tls(address: str | None, tls: TLSFiles | None) -> str | None:
    """Check the TLS options against the scheduler address; return where the client's
    certificates come from ("options", "dask config", "security loader") or None (no TLS).

    A ``tls://`` scheduler needs certificates from the options or, when none is given, from
    the dask config (``distributed.comm.tls.ca-file`` and ``distributed.comm.tls.client.cert``
    / ``.key``, which ``distributed.security.Security()`` reads, or a
    ``distributed.client.security-loader``). Options with a ``tcp://`` scheduler, or with no
    scheduler at all, are refused rather than ignored. Files must exist, be readable and hold
    what they should (the CA parses, the certificate matches its key).
    """
    scheme = normalise_address(address).split("://")[0] if address is not None else None
    if tls is not None:
        given = next(f"--tls-{k}" for k in ("ca", "cert", "key") if getattr(tls, k))
        if scheme is None:
            raise OptionError(f"{given} secures the connection to an existing scheduler; add --scheduler tls://HOST:PORT "
                              "or drop the --tls-* options")
        if scheme != "tls":
            raise OptionError(f"{given} is given but the scheduler address {address} is {scheme}:// (unencrypted); "
                              "use --scheduler tls://HOST:PORT or drop the --tls-* options")
        missing = [f"--tls-{k}" for k in ("ca", "cert") if not getattr(tls, k)]
        if missing:
            raise OptionError(f"--scheduler {address} with {given} needs {' and '.join(missing)} too: the cluster's CA "
                              "certificate (--tls-ca) and this client's certificate and key (--tls-cert, --tls-key)")
        _check_tls_files({f"--tls-{k}": getattr(tls, k) for k in ("ca", "cert", "key")}, "give")
        return "options"
    if scheme != "tls":
        return None
    import dask

    if dask.config.get("distributed.client.security-loader", None):
        return "security loader"
    conf = {TLS_CONFIG[k]: dask.config.get(TLS_CONFIG[k], None) for k in ("ca", "cert", "key")}
    if not conf[TLS_CONFIG["ca"]] or not conf[TLS_CONFIG["cert"]]:
        raise OptionError(f"--scheduler {address} needs client certificates: give --tls-ca, --tls-cert and --tls-key "
                          f"(or set {TLS_CONFIG['ca']}, {TLS_CONFIG['cert']} and {TLS_CONFIG['key']} in the dask config)")
    _check_tls_files({f"{k} (dask config)": v for k, v in conf.items()}, "set")
    return "dask config"


def _check_tls_files(files: dict[str, str | None], verb: str) -> None:
    """Each file exists and is readable; the CA parses; the certificate and key belong together."""
    import ssl

    (ca_opt, ca), (cert_opt, cert), (key_opt, key) = files.items()
    for opt, value in files.items():
        if not value or "\n" in value:  # absent, or PEM text held in the dask config itself
            continue
        try:
            check_file(value, limit=INPUT_LIMIT)  # a FIFO or a device would block or never end
            with open(value, "rb") as fh:
                fh.read(1)
        except ReadProblem as exc:
            if exc.message.startswith("file not found"):
                raise OptionError(f"{opt} {value}: file not found; {verb} the path of an existing PEM file") from None
            raise OptionError(f"{opt} {value}: {exc.message}") from None
        except FileNotFoundError:
            raise OptionError(f"{opt} {value}: file not found; {verb} the path of an existing PEM file") from None
        except OSError as exc:
            raise OptionError(f"{opt} {value}: cannot be read ({exc.strerror or type(exc).__name__}); "
                              f"fix its permissions or {verb} another file") from None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, **({"cadata": ca} if "\n" in ca else {"cafile": ca}))
    except (ssl.SSLError, ValueError) as exc:
        shown = "(PEM text)" if "\n" in ca else ca
        raise OptionError(f"{ca_opt} {shown} holds no PEM CA certificate "
                          f"({_ssl_reason(exc)}); {verb} the CA certificate that signed the cluster's certificates") from None
    if "\n" in cert or (key and "\n" in key):
        return  # in-memory PEM text: distributed checks it when it connects
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        what = f"{cert_opt} {cert}" + (f" with {key_opt} {key}" if key else f" (no {key_opt})")
        raise OptionError(f"{what} is not a PEM certificate and its private key ({_ssl_reason(exc)}); "
                          f"{verb} this client's certificate and the key that belongs to it") from None


def _ssl_reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or str(exc).strip() or type(exc).__name__


