import pytest
from hypothesis import given
from hypothesis import strategies as st

from qastream_shared.keys import InvalidApiKey, generate_key, hash_key, parse_key_id, verify_key

PEPPER = "test-pepper-123"


def test_generated_key_round_trips() -> None:
    issued = generate_key(PEPPER)
    assert issued.key.startswith(f"qa_{issued.key_id}_")
    assert parse_key_id(issued.key) == issued.key_id
    assert verify_key(issued.key, issued.key_hash, PEPPER)
    assert issued.key_hash == hash_key(issued.key, PEPPER)
    assert issued.key not in issued.key_hash and len(issued.key_hash) == 64


def test_keys_are_unique() -> None:
    issued = [generate_key(PEPPER) for _ in range(200)]
    assert len({k.key_id for k in issued}) == len({k.key for k in issued}) == 200


def test_wrong_key_or_pepper_does_not_verify() -> None:
    issued = generate_key(PEPPER)
    other = generate_key(PEPPER)
    assert not verify_key(other.key, issued.key_hash, PEPPER)
    assert not verify_key(issued.key, issued.key_hash, "another-pepper")
    tampered = issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B")
    assert not verify_key(tampered, issued.key_hash, PEPPER)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "qa_",
        "Bearer qa_0123456789abcdef_" + "a" * 43,
        "qa_0123456789ABCDEF_" + "a" * 43,  # ids are lower-case hex
        "qa_0123456789abcde_" + "a" * 43,
        "qa_0123456789abcdef_" + "a" * 42,
        "qa_0123456789abcdef_" + "a" * 42 + "!",
        "xx_0123456789abcdef_" + "a" * 43,
        "qa_0123456789abcdef_" + "a" * 43 + "\n",
    ],
)
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidApiKey, match="malformed API key"):
        parse_key_id(key)


@given(st.text(max_size=80))
def test_parse_never_crashes_otherwise(key: str) -> None:
    try:
        key_id = parse_key_id(key)
    except InvalidApiKey:
        return
    assert key.startswith(f"qa_{key_id}_")
