"""How bench.pipeline finds the broker's and the database's processes, and counts their CPU."""

import os
import socket
import subprocess
import sys

import psutil

from bench.pipeline_stack import cpu_with_children, listening


def test_the_process_listening_at_a_local_address_is_found_by_url_or_host_and_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        by_host_port = listening(f"127.0.0.1:{port}")
        by_url = listening(f"postgresql://user:secret@localhost:{port}/db")
        assert by_host_port is not None and by_host_port.pid == os.getpid()
        assert by_url is not None and by_url.pid == os.getpid()
    assert listening(f"127.0.0.1:{port}") is None  # closed: nobody listens there now


def test_an_address_on_another_host_is_not_looked_for_here() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening(f"db.example.com:{port}") is None


def test_a_server_s_cpu_keeps_what_its_exited_children_used() -> None:
    """A backend that ends between two readings must not take its CPU away with it."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time\n"
            f"subprocess.run([sys.executable, '-c', {burn!r}])\n"
            f"sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "done\n"  # the child has exited
        assert cpu_with_children(psutil.Process(parent.pid)) >= 0.3
    finally:
        parent.kill()
        parent.wait()
