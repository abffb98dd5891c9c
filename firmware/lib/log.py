"""Structured one-line logs (`event=name key=value ...`) for the firmware.

RAM: a few hundred bytes of code; nothing retained. The host runner replaces
`sink` to route lines into Python logging; on a device they go to the REPL.
"""


def _print_sink(line: str) -> None:
    print(line)


sink = _print_sink


def log(event: str, **fields: object) -> None:
    """Emit `event=<event>` followed by the fields in a stable order."""
    parts = ["event=" + event]
    for key in sorted(fields):
        value = fields[key]
        if isinstance(value, str) and (" " in value or not value):
            value = '"' + value + '"'
        parts.append(key + "=" + str(value))
    try:
        sink(" ".join(parts))
    except Exception:  # a broken sink must never stop the device
        pass
