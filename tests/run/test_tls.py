"""TLS to an existing dask scheduler: a real `dask scheduler --protocol tls` and `dask worker`
started with certificates made for the test (openssl); `incident run --tls-*` completes a run
through them, clients without the cluster's certificates (plain TCP, TLS without a client
certificate, a certificate from another CA) are refused, and options that do not fit together
are one-line errors (exit 2)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import runhelp
from runhelp import CASE, incident

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the TLS tests make their certificates with the openssl command")

TINY = ["--seed", "3", "--draws", "100", "--tune", "100", "--chains", "2", "--smc-chains", "2", "--smc-draws", "100"]


# ------------------------------------------------------------------ certificates
def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _signed(d: Path, name: str, ca: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
             "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """A CA with scheduler, worker and client certificates; and a client certificate from another CA."""
    d = tmp_path_factory.mktemp("certs")
    _ca(d, "ca")
    for name in ("scheduler", "worker", "client"):
        _signed(d, name, "ca")
    _ca(d, "rogue-ca")
    _signed(d, "rogue", "rogue-ca")
    return {p.stem if p.suffix == ".pem" else f"{p.stem}-key": p for p in d.glob("*") if p.suffix in (".pem", ".key")}


def _client_options(certs: dict[str, Path]) -> list[str]:
    return ["--tls-ca", str(certs["ca"]), "--tls-cert", str(certs["client"]), "--tls-key", str(certs["client-key"])]


class TLSDaskProcesses(runhelp.DaskProcesses):
    """runhelp's real scheduler and workers, listening on tls:// with the test's certificates."""

    def __init__(self, tmp: Path, certs: dict[str, Path]) -> None:
        super().__init__(tmp)
        self.certs = certs
        self.address = f"tls://127.0.0.1:{self.port}"

    def start_scheduler(self) -> None:
        c = self.certs
        self._start("scheduler", ["scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", str(self.port),
                                  "--dashboard-address", "127.0.0.1:0", "--tls-ca-file", str(c["ca"]),
                                  "--tls-cert", str(c["scheduler"]), "--tls-key", str(c["scheduler-key"])])
        runhelp.wait_for(self._listening, 60, "the TLS dask scheduler to listen")

    def start_worker(self, name: str) -> subprocess.Popen:
        c = self.certs
        return self._start(name, ["worker", self.address, "--nthreads", "1", "--no-nanny", "--name", name, "--host", "127.0.0.1",
                                  "--dashboard-address", "127.0.0.1:0", "--tls-ca-file", str(c["ca"]),
                                  "--tls-cert", str(c["worker"]), "--tls-key", str(c["worker-key"])])

    def security(self, cert: str = "client"):  # noqa: ANN201
        from distributed.security import Security

        return Security(tls_ca_file=str(self.certs["ca"]), tls_client_cert=str(self.certs[cert]),
                        tls_client_key=str(self.certs[f"{cert}-key"]), require_encryption=True)

    def refusals(self) -> int:
        """How many TLS handshakes the scheduler has refused (its log says so for each)."""
        return (self.tmp / "scheduler.log").read_text().count("TLS handshake failed")

    def refuses(self, before: int) -> None:
        runhelp.wait_for(lambda: self.refusals() > before, 10, "the scheduler to log the refused handshake")

    def n_workers(self) -> int:
        from distributed import Client

        with Client(self.address, security=self.security(), timeout="10s") as c:
            return len(c.scheduler_info()["workers"])


@pytest.fixture(scope="module")
def tls_cluster(certs, tmp_path_factory):
    yield from TLSDaskProcesses(tmp_path_factory.mktemp("dask-tls"), certs).running("tls-w1")


# ------------------------------------------------------------------ a run over TLS
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_incident_run_over_tls_completes_on_the_tls_worker(tls_cluster, certs, tmp_path):
    out = incident("run", CASE, "--out", tmp_path, "--run-id", "tls", "--scheduler", tls_cluster.address, *_client_options(certs),
                   *TINY, timeout=600)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "oracle" / "tls"
    attribution = runhelp.numbers(run)
    assert set(attribution["hypotheses"]) == {"external", "internal", "engine"}
    ex = runhelp.manifest(run)["executions"][-1]
    assert ex["backend"] == f"dask scheduler {tls_cluster.address}" and ex["status"] == "complete"
    assert len(ex["computed"]) == runhelp.N_TASKS
    # every task ran in the one worker process that reached the scheduler over TLS (not in the client)
    (process,) = ex["tasks_by_process"]
    assert ex["tasks_by_process"][process] == runhelp.N_TASKS
    assert int(process.rsplit(":", 1)[1]) == tls_cluster.procs["tls-w1"].pid


def test_the_engine_connects_with_the_options_or_the_dask_config(tls_cluster, certs):
    import dask

    from engine.run.cluster import ClusterSpec, TLSFiles, connect

    tls = TLSFiles.of(certs["ca"], certs["client"], certs["client-key"])
    spec = ClusterSpec.make(scheduler=tls_cluster.address, tls=tls)
    spec.preflight()
    with connect(spec) as (client, _):
        assert client.security.require_encryption and client.security.tls_client_cert == str(certs["client"])
        assert len(client.scheduler_info()["workers"]) == 1
    # no options: the certificates come from the dask config (distributed.comm.tls.*), as distributed reads them
    with dask.config.set(tls.dask_config()):
        spec = ClusterSpec.make(scheduler=tls_cluster.address)
        assert spec.tls is None
        with connect(spec) as (client, _):
            assert client.security.tls_ca_file == str(certs["ca"])
            assert len(client.scheduler_info()["workers"]) == 1


# ------------------------------------------------------------------ refused clients
def test_a_plain_tcp_client_is_refused(tls_cluster):
    from distributed import Client

    before = tls_cluster.refusals()
    with pytest.raises((OSError, TimeoutError)):
        Client(f"tcp://127.0.0.1:{tls_cluster.port}", timeout="5s")
    tls_cluster.refuses(before)  # refused by the scheduler, not given up by the client


def test_a_tls_client_without_a_certificate_is_refused(tls_cluster, certs):
    """It trusts the scheduler (knows the CA) but presents no certificate: the scheduler ends the handshake."""
    before = tls_cluster.refusals()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs["ca"]))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", tls_cluster.port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                data = tls.recv(1)  # TLS 1.3: the server's refusal arrives after the client's side of the handshake
        except ssl.SSLError as exc:  # the scheduler's alert (not our side failing to trust the scheduler)
            assert not isinstance(exc, ssl.SSLCertVerificationError), exc
        else:
            assert data == b"", "the scheduler accepted a TLS client without a certificate"
    tls_cluster.refuses(before)


def test_a_client_certificate_from_another_ca_is_refused(tls_cluster):
    from distributed import Client

    before = tls_cluster.refusals()
    with pytest.raises((OSError, TimeoutError)):
        Client(tls_cluster.address, security=tls_cluster.security("rogue"), timeout="5s")
    tls_cluster.refuses(before)


def test_incident_run_with_the_wrong_certificate_is_a_one_line_error(tls_cluster, certs, tmp_path):
    out = incident("run", CASE, "--out", tmp_path, "--scheduler", tls_cluster.address, "--tls-ca", certs["ca"],
                   "--tls-cert", certs["rogue"], "--tls-key", certs["rogue-key"], *TINY, timeout=300)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert f"no TLS connection to the dask scheduler at {tls_cluster.address}" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


# ------------------------------------------------------------------ options that do not fit
BAD = {
    "tls-without-certificates": (lambda c: [], "needs client certificates: give --tls-ca, --tls-cert and --tls-key"),
    "cert-with-tcp": (lambda c: ["--tls-cert", c["client"], "--tls-key", c["client-key"], "--tls-ca", c["ca"]], "is tcp:// (unencrypted)"),
    "cert-without-scheduler": (lambda c: ["--tls-ca", c["ca"]], "--tls-ca secures the connection to an existing scheduler"),
    "missing-ca-option": (lambda c: ["--tls-cert", c["client"], "--tls-key", c["client-key"]], "needs --tls-ca too"),
    "missing-cert-file": (lambda c: ["--tls-ca", c["ca"], "--tls-cert", "no/such/client.pem", "--tls-key", c["client-key"]],
                          "/no/such/client.pem: file not found"),
    "unreadable-key": (lambda c: ["--tls-ca", c["ca"], "--tls-cert", c["client"], "--tls-key", c["ca"].parent],
                       "--tls-key {dir}: is a folder, not a regular file"),
    "key-of-another-cert": (lambda c: ["--tls-ca", c["ca"], "--tls-cert", c["client"], "--tls-key", c["worker-key"]],
                            "is not a PEM certificate and its private key"),
    "ca-not-a-certificate": (lambda c: ["--tls-ca", c["client-key"], "--tls-cert", c["client"], "--tls-key", c["client-key"]],
                             "holds no PEM CA certificate"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_tls_options_that_do_not_fit_are_one_line_errors(case, certs, tmp_path):
    options, message = BAD[case]
    port = runhelp.free_port()  # nothing listens: the options are refused before any connection
    scheduler = {"cert-with-tcp": ["--scheduler", f"tcp://127.0.0.1:{port}"], "cert-without-scheduler": []}.get(
        case, ["--scheduler", f"tls://127.0.0.1:{port}"])
    out = incident("run", CASE, "--out", tmp_path, *scheduler, *options(certs), timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message.format(dir=certs["ca"].parent) in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "oracle").exists()


def test_the_dask_config_is_checked_like_the_options(certs, tmp_path):
    env = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(tmp_path / "gone.pem"),
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certs["client"]),
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certs["client-key"])}
    out = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(CASE), "--out", str(tmp_path), "--scheduler",
                          f"tls://127.0.0.1:{runhelp.free_port()}"], capture_output=True, text=True, timeout=120,
                         cwd=runhelp.ROOT, env={**runhelp.env(), **env}, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert f"distributed.comm.tls.ca-file (dask config) {tmp_path / 'gone.pem'}: file not found" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("command", ["sensitivity", "calibrate"])
def test_the_other_dask_commands_take_the_same_options(command, certs, tmp_path):
    target = tmp_path / "no-run" if command == "sensitivity" else CASE
    out = incident(command, target, "--scheduler", f"tcp://127.0.0.1:{runhelp.free_port()}", *_client_options(certs), timeout=120)
    if out.returncode == 2 and "No such command" in out.stderr:
        pytest.skip(f"`incident {command}` is not in this build's CLI")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "--tls-ca is given but the scheduler address" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1
