"""py-spy's raw stacks become the closing note's profile table: event-loop thread only,
one entry per function, framework frames out of the cumulative list."""

from __future__ import annotations

from devtools.bench.profile import summarize

ROOT = "<module> (citysense/__main__.py:5);Runner.run (asyncio/runners.py:118)"
RAW = "\n".join([
    f"{ROOT};Pipeline.prepare (gateway/pipeline.py:141);decode_v1 (gateway/codecs/v1.py:90) 6",
    f"{ROOT};Pipeline.prepare (gateway/pipeline.py:150);decode_v1 (gateway/codecs/v1.py:95) 2",
    f"{ROOT};MqttSource._read (gateway/mqtt_adapter.py:250) 2",
    "_bootstrap (threading.py:1002);serve_forever (socketserver.py:233) 40",
])


def test_profile_summary_counts_the_event_loop_thread_per_function() -> None:
    s = summarize(RAW, top=5)
    assert s["samples"] == 10  # the metrics server thread's 40 idle samples are not counted
    assert s["self"][0] == {"function": "decode_v1 (codecs/v1.py)", "pct": 80.0}
    cumulative = {e["function"]: e["pct"] for e in s["cumulative"]}
    assert cumulative == {
        "Pipeline.prepare (gateway/pipeline.py)": 80.0, "decode_v1 (codecs/v1.py)": 80.0,
        "MqttSource._read (gateway/mqtt_adapter.py)": 20.0,
    }


def test_profile_summary_of_nothing_is_empty() -> None:
    assert summarize("", 5) == {"samples": 0, "self": [], "cumulative": []}
