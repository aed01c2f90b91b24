"""`CTTV2_LOG_FORMAT=json cttv2 serve` (a real process, on the embedded default): every line
it writes is one JSON object, the access line carries the request id; and /metrics answers an
admin from the real server."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import Stack


def test_serve_writes_json_lines(tmp_path):
    s = Stack.create("embedded", tmp_path, {"CTTV2_LOG_FORMAT": "json"})
    try:
        token = s.create_user("root", admin=True)
        s.start_api()
        assert s.client().get("/healthz", headers={"X-Request-ID": "json-line-1"}).status_code == 200
        r = s.client(token).get("/metrics")
        assert r.status_code == 200, r.text
        names = {f.name for f in text_string_to_metric_families(r.text)}
        assert {"cttv2_http_requests", "cttv2_jobs", "cttv2_queue_depth"} <= names, names
        s.stop()
        lines = [line for line in s.api.log().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]  # every line: one JSON object
        assert all({"time", "level", "logger", "message", "request_id"} <= set(rec) for rec in records), records
        access = [rec for rec in records if rec["logger"] == "cttv2.access"]
        assert any(
            rec["request_id"] == "json-line-1" and rec["message"].startswith("GET /healthz 200") for rec in access
        )
    finally:
        s.destroy()
