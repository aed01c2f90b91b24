"""A server-sent events parser (the WHATWG event-stream format): `id:`, `event:`, `data:` and
`retry:` fields, comment lines starting with ':' (the server's keep-alives), a blank line ends
an event. `data` is decoded as JSON when it parses."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cttv2_client.models import Event


@dataclass
class SSEParser:
    """Feeds on lines; `last_event_id` is the id of the last *complete* event, the one to resume
    after (an id line of an event cut off mid-way does not count)."""

    last_event_id: str | None = None
    retry_ms: int | None = None  # the server's reconnection delay hint
    _id: str | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _has_data: bool = False

    def __post_init__(self) -> None:
        self._id = self.last_event_id

    def reset(self) -> None:
        """Drop a partly received event (before reading a new connection)."""
        self._id, self._event, self._data, self._has_data = self.last_event_id, "", [], False

    def feed(self, line: str) -> Event | None:
        """Take one line (without its line ending); return an Event when one is complete."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_event_id = self._id
        if not self._has_data:
            self._event = ""
            return None
        raw = "\n".join(self._data)
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw
        event = Event(id=self.last_event_id, event=self._event or "message", data=data)
        self._event, self._data, self._has_data = "", [], False
        return event


def iter_events(lines: Iterable[str], parser: SSEParser | None = None) -> Iterator[Event]:
    parser = parser or SSEParser()
    for line in lines:
        event = parser.feed(line.rstrip("\r\n"))
        if event is not None:
            yield event
