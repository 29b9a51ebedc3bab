"""TLS material of a secured local stack: a CA and the broker's certificate, made with openssl.

Generated once per state dir into ``<state_dir>/secrets/``, in PEM, the format both sides read
without a keystore password: Kafka 4 takes ``ssl.keystore.type=PEM`` (an unencrypted PKCS#8 key
followed by its certificate chain) and ``ssl.truststore.type=PEM``, librdkafka takes the CA as
``ssl.ca.location``. The certificate names 127.0.0.1, localhost and the configured Kafka host,
so clients can keep hostname verification on.

openssl rather than the JDK's keytool: keytool cannot write a private key out as PEM. The CA's
key is deleted once the broker certificate is signed: nothing else is ever signed with it, and
a key that does not exist cannot leak. To renew, delete the secrets folder (a new CA comes with
it; clients read the CA from the same path).
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from streamscore.errors import StackError
from streamscore.stack.credentials import write_private

log = logging.getLogger(__name__)

CA_CERT = "kafka-ca.pem"
BROKER_KEYSTORE = "kafka-broker.pem"
CA_DAYS = 3650
BROKER_DAYS = 825


@dataclass(frozen=True)
class BrokerTls:
    ca_cert: Path  # public: what clients trust (kafka_ssl_ca_location)
    keystore: Path  # private (0600): the broker's key, then its certificate and the CA's


def broker_tls_paths(directory: Path) -> BrokerTls:
    return BrokerTls(directory / CA_CERT, directory / BROKER_KEYSTORE)


def subject_alt_names(hosts: Iterable[str]) -> str:
    """openssl's subjectAltName value: IP entries for addresses, DNS entries for names."""
    entries: list[str] = []
    for host in dict.fromkeys(hosts):
        try:
            entries.append(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            entries.append(f"DNS:{host}")
    return ",".join(entries)


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise StackError("openssl is not installed: apt-get install openssl")
    return found


def _run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"openssl failed ({' '.join(args[:3])} ...):\n{result.stderr[-2000:]}")


def ensure_broker_tls(directory: Path, hosts: Iterable[str]) -> BrokerTls:
    """The CA and broker certificate in ``directory``, generated if either is missing."""
    paths = broker_tls_paths(directory)
    if paths.ca_cert.exists() and paths.keystore.exists():
        return paths
    openssl = _openssl()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Built in a private scratch folder inside ``directory``: a half-made set is never used.
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        work = Path(scratch)
        ca_key, ca_cert = work / "ca.key", work / "ca.pem"
        key, cert = work / "broker.key", work / "broker.pem"
        _run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", str(ca_key), "-out", str(ca_cert), "-days", str(CA_DAYS),
                "-subj", "/CN=streamscore local stack CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ]
        )  # fmt: skip
        _run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", str(BROKER_DAYS),
                "-subj", "/CN=localhost", "-CA", str(ca_cert), "-CAkey", str(ca_key),
                "-addext", f"subjectAltName={subject_alt_names(hosts)}",
                "-addext", "basicConstraints=critical,CA:FALSE",
                "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
                "-addext", "extendedKeyUsage=serverAuth",
            ]
        )  # fmt: skip
        ca_pem = ca_cert.read_text()
        write_private(paths.keystore, key.read_text() + cert.read_text() + ca_pem)
        paths.ca_cert.write_text(ca_pem)
        paths.ca_cert.chmod(0o644)
    log.info("generated a CA and a broker certificate in %s", directory)
    return paths
