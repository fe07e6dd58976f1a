"""The relay's partitioner (outbox.partition_of) puts every key where aiokafka's send() and the Java client
put it: murmur2 of the key, positive, modulo the partition count."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner, murmur2

from qastream_shared.outbox import murmur2 as fast_murmur2
from qastream_shared.outbox import partition_of


def test_murmur2_equals_aiokafkas_for_keys_of_every_length_and_byte() -> None:
    rng = random.Random(15)
    keys = [bytes(rng.getrandbits(8) for _ in range(n)) for n in range(0, 90) for _ in range(40)]
    keys += [b"acme:conversation-000123", "tenant:ç-日本".encode(), b"\xff" * 7, b"\x00" * 5]
    for key in keys:
        assert fast_murmur2(key) == murmur2(key), key


def test_the_java_clients_reference_values() -> None:
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2, as unsigned 32-bit values
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    for key, signed in cases.items():
        assert fast_murmur2(key) == signed & 0xFFFFFFFF


def test_partition_of_matches_the_default_partitioner() -> None:
    rng = random.Random(7)
    default = DefaultPartitioner()
    for count in (1, 3, 12, 50):
        partitions = list(range(count))
        for _ in range(300):
            key = f"t{rng.randrange(9)}:c-{rng.getrandbits(48):x}".encode()
            assert partition_of(key, partitions) == default(key, partitions, partitions)
    assert partition_of(None, [0, 1, 2]) in {0, 1, 2}
