"""How fast gateway/mqtt_wire.py parses PUBLISH packets out of receive chunks (CPU only, no I/O).

    python -m devtools.bench.mqtt_wire_speed [--seconds 3]

Builds 256 KB chunks of QoS 1 PUBLISH packets shaped like the gateway's load (payload-v1
readings on citysense/v1/airbox/<id>/up, MQTT 5 and 3.1.1) and times `take_publishes`
with the sink the session uses (one `Inbound` per message), chunk after chunk, as the
session's `data_received` sees them. Prints packets/s and µs per packet for each protocol.
"""

from __future__ import annotations

import argparse
import time

import orjson

from gateway import mqtt_wire as wire
from gateway.mqtt_session import Inbound

CHUNK_BYTES = 256 * 1024


def chunk_of_publishes(protocol: int) -> tuple[bytes, int]:
    """Whole PUBLISH packets filling about one 256 KB receive chunk: (bytes, packet count)."""
    packets: list[bytes] = []
    size = 0
    i = 0
    while size < CHUNK_BYTES:
        device = f"box-{i % 500:04d}"
        payload = orjson.dumps(
            {"v": 1, "id": device, "seq": i, "ts": 1_763_785_200 + i, "m": {"pm25": 12 + i % 40, "t": 24.6, "rh": 71.2}}
        )
        packet = wire.build_publish(
            f"citysense/v1/airbox/{device}/up", payload, protocol=protocol, qos=1, packet_id=i % 65535 + 1
        )
        packets.append(packet)
        size += len(packet)
        i += 1
    return b"".join(packets), len(packets)


def packets_per_second(protocol: int, seconds: float) -> tuple[float, int]:
    """Parse the chunk over and over for `seconds`: (packets/s, bytes per packet)."""
    chunk, count = chunk_of_publishes(protocol)
    parsed = 0
    started = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        queue: list[Inbound] = []
        append = queue.append
        received_at = time.time()

        def sink(topic: str, payload: bytes, packet_id: int, qos: int) -> None:
            append(Inbound(topic, payload, packet_id, qos, received_at, 1))  # noqa: B023 - used at once

        end = wire.take_publishes(chunk, 0, protocol, sink, 1_000_000)
        assert end == len(chunk) and len(queue) == count
        parsed += count
        elapsed = time.perf_counter() - started
    return parsed / elapsed, len(chunk) // count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per protocol")
    args = parser.parse_args()
    for name, protocol in (("5", wire.PROTOCOL_5), ("3.1.1", wire.PROTOCOL_311)):
        rate, packet_bytes = packets_per_second(protocol, args.seconds)
        print(f"MQTT {name}: {rate:,.0f} PUBLISH/s parsed ({1e6 / rate:.2f} µs each, {packet_bytes} B packets)")


if __name__ == "__main__":
    main()
