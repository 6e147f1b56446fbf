"""Avro contracts and their wire formats.

The schema files beside this module are the contracts users produce to and consume from.
:mod:`driftline.schemas.wire` turns records into framed bytes and back.
"""

from driftline.schemas.wire import (
    AvroDecoder,
    AvroEncoder,
    AvroSchema,
    RegistryResolver,
    SchemaStore,
    builtin_store,
    load_schema,
)

__all__ = [
    "AvroDecoder",
    "AvroEncoder",
    "AvroSchema",
    "RegistryResolver",
    "SchemaStore",
    "builtin_store",
    "load_schema",
]
