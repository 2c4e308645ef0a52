"""JSON read with every digit: fractions as ``Decimal``, integers of any size as ``int``.

Used for JSON text columns and for Elasticsearch responses (a ``_source`` holds numbers as the
sink wrote them; a float would round ``1234567890.1234567890123456789``)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from elasticsearch.serializer import JsonSerializer


def loads_exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal, parse_constant=_constant)


def _constant(name: str) -> Decimal:
    return Decimal(name.replace("Infinity", "Inf"))  # NaN, Infinity, -Infinity


class ExactSerializer(JsonSerializer):
    """The Elasticsearch client's serializer, responses parsed by :func:`loads_exact`."""

    def json_loads(self, data: bytes) -> Any:
        return loads_exact(data)


EXACT_SERIALIZERS = {JsonSerializer.mimetype: ExactSerializer()}
