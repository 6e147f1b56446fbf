"""Kafka record headers as plain data: no client import, so pure modules and the Kafka edge share it."""

from __future__ import annotations

Headers = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]
"""Kafka headers as confluent-kafka accepts and returns them."""


def header_list(headers: Headers | None) -> list[tuple[str, str | bytes | None]]:
    """Headers as a list of pairs, whichever form they came in.

    >>> header_list({"a": b"1"}), header_list(None)
    ([('a', b'1')], [])
    """
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)
