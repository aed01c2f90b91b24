"""The embedded default's broker (service.core.filesystem_transport): a worker polling the
queue folder while the API, another process, writes a message never reads a partial message.
kombu's own transport, which creates the file in the queue folder and then writes it, loses
that race (checked once by running this against kombu.transport.filesystem:Transport)."""

from __future__ import annotations

import subprocess
import sys
import time
from queue import Empty

import pytest
from kombu import Connection

TRANSPORT = "service.core.filesystem_transport:Transport"

pytestmark = pytest.mark.fast

WRITER = """
import sys
from kombu import Connection
from kombu.utils.imports import symbol_by_name
folder, n, transport = sys.argv[1], int(sys.argv[2]), symbol_by_name(sys.argv[3])
options = {"data_folder_in": folder, "data_folder_out": folder}
with Connection(transport=transport, transport_options=options) as conn:
    for i in range(n):
        # a large message: milliseconds of encoding and writing, a wide window to look in
        conn.default_channel._put("q", {"i": i, "body": "x" * 2_000_000})
"""


def test_a_polling_reader_in_another_process_gets_every_message_whole(tmp_path):
    from kombu.utils.imports import symbol_by_name

    n = 30
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "store_processed": False}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n), TRANSPORT])
    got: list[int] = []
    with Connection(transport=symbol_by_name(TRANSPORT), transport_options=options) as conn:
        channel = conn.default_channel
        deadline = time.monotonic() + 120
        while len(got) < n and time.monotonic() < deadline:
            try:
                message = channel._get("q")  # as an idle worker polls: list, move, read
            except Empty:
                continue
            assert len(message["body"]) == 2_000_000
            got.append(message["i"])
    assert writer.wait(60) == 0
    assert sorted(got) == list(range(n))
    assert not list(tmp_path.iterdir())  # every message taken, no partial file left behind
