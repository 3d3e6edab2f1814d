"""A real Apache Kafka 4 broker for tests (KRaft, one node), from Maven Central artifacts.

`tests/kafka-server/pom.xml` names `org.apache.kafka:kafka_2.13`; `mvn dependency:copy-dependencies`
puts it and its dependencies in `target/lib/` (built once, offline first, then cached). A
start writes a `server.properties` for one combined broker and controller on two free ports
of 127.0.0.1, formats its log directory (`kafka.tools.StorageTool format`, as
`kafka-storage.sh` does) and runs `kafka.Kafka`, then waits until a client sees the broker.
The JVM runs under a small shell that ends it when its stdin closes, so a test run that is
killed outright takes the broker down with it. See docs/testing-kafka.md.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests import jvm_process
from tests.jvm_process import free_port

PROJECT = Path(__file__).resolve().parent / "kafka-server"
TARGET = PROJECT / "target"
LIB = TARGET / "lib"
STAMP = TARGET / ".built"

# A modest heap: the test topics are small and the machine (2 cores) also runs PostgreSQL.
JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

# Hang guards, not expectations: a start takes ~20 s.
FORMAT_TIMEOUT_SECONDS = 300.0
START_TIMEOUT_SECONDS = 300.0
READY_LINE = "Kafka Server started"

# The JVM ends when its stdin closes (the parent stopped or died).
_WATCHED = '"$@" & child=$!; cat >/dev/null; kill "$child" 2>/dev/null; wait "$child"'


class KafkaServerError(RuntimeError):
    """The test Kafka broker could not be built or started; the message says why."""


def build() -> Path:
    """Copy the broker's jars to tests/kafka-server/target/lib unless they are current."""

    def is_current() -> bool:
        return STAMP.is_file() and STAMP.stat().st_mtime >= (PROJECT / "pom.xml").stat().st_mtime

    jvm_process.maven_build(
        PROJECT,
        ["dependency:copy-dependencies"],
        is_current,
        KafkaServerError,
        clean=LIB,
        after=STAMP.touch,
    )
    return LIB


@dataclass
class KafkaServer:
    """A running broker: `bootstrap_servers` is `127.0.0.1:PORT`."""

    process: subprocess.Popen[bytes]
    bootstrap_servers: str
    working_directory: Path

    def stop(self, *, keep_data: bool = False) -> None:
        """Close stdin (the shell ends the JVM), then escalate to SIGTERM and SIGKILL of the
        process group; remove the files unless ``keep_data`` (a restart on the same port)."""
        jvm_process.stop(self.process, group=True)
        if not keep_data:
            shutil.rmtree(self.working_directory, ignore_errors=True)

    def restart(self) -> None:
        """Start again after `stop(keep_data=True)`: same port, same topics and offsets."""
        self.process = start_kafka(self.working_directory).process


def start_kafka(working_directory: Path, port: int = 0) -> KafkaServer:
    """Build if needed, then start a broker whose files live in ``working_directory`` (formatted
    once: a second start on the same directory and ``port`` has the data of the first)."""
    lib = build()
    java = jvm_process.java(KafkaServerError, "Kafka 4 needs Java 17+")
    working_directory.mkdir(parents=True, exist_ok=True)
    properties = working_directory / "server.properties"
    log_dir = working_directory / "logs"
    if not properties.is_file():
        port = port or free_port()
        _write_properties(properties, log_dir, port, free_port())
    port = int(_read_property(properties, "advertised.listeners").rpartition(":")[2])
    classpath = f"{lib}/*"
    if not (log_dir / "meta.properties").is_file():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        formatted = jvm_process.run(
            [java, *JVM_OPTIONS, "-cp", classpath, "kafka.tools.StorageTool", "format",
             f"--cluster-id={cluster_id}", "-c", str(properties)],
            working_directory,
            FORMAT_TIMEOUT_SECONDS,
        )  # fmt: skip
        if formatted.returncode != 0:
            raise KafkaServerError(
                f"formatting {log_dir} failed:\n{jvm_process.tail(formatted.stdout)}"
            )
    log_path = working_directory / "kafka.log"
    with log_path.open("ab") as log:
        start_offset = log.tell()
        process = subprocess.Popen(
            ["sh", "-c", _WATCHED, "kafka", java, *JVM_OPTIONS, "-cp", classpath, "kafka.Kafka",
             str(properties)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C reaches pytest, whose teardown stops the broker in order.
            start_new_session=True,
        )  # fmt: skip
    server = KafkaServer(process, f"127.0.0.1:{port}", working_directory)
    try:
        _wait_until_ready(server, log_path, start_offset)
    except BaseException:
        server.stop(keep_data=True)
        raise
    return server


def _write_properties(path: Path, log_dir: Path, port: int, controller_port: int) -> None:
    path.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={log_dir}",
                "num.partitions=3",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=3",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                # A consumer group forms at once: tests do not wait out the rebalance delay.
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )
    )


def _read_property(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.partition("=")[2]
    raise KafkaServerError(f"{path} has no {key}")


def _wait_until_ready(server: KafkaServer, log_path: Path, offset: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with log_path.open("rb") as log:
            log.seek(offset)
            output = log.read().decode(errors="replace")
        if READY_LINE in output:
            return
        if server.process.poll() is not None:
            raise KafkaServerError(
                f"the test Kafka broker exited with {server.process.returncode} before it "
                f"was ready:\n{jvm_process.tail(output)}"
            )
        time.sleep(0.2)
    raise KafkaServerError(
        f"the test Kafka broker was not ready within {START_TIMEOUT_SECONDS:.0f} s; "
        f"its output is in {log_path}"
    )
