"""kombu's filesystem transport (the embedded default's broker), with whole messages.

kombu (5.x) creates a message's file in the queue folder and then writes it, while an idle
worker lists that folder every 0.1 s and moves and reads any `<stamp>_<uuid>.<queue>.msg` it
finds, without the writer's lock: it can read the file before it is written. Seen here under
load: an empty payload, a JSONDecodeError in the worker's consumer, and the message gone (the
file is removed once read), the job queued until the reconciler sent it again. Here a message
is written under a name no reader takes and renamed into place when complete: a rename within
one folder is atomic, so a reader sees the whole message or nothing."""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

PARTIAL = ".partial"  # a reader takes only names ending in .<queue>.msg


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        try:
            with open(path + PARTIAL, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(path + PARTIAL, path)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
