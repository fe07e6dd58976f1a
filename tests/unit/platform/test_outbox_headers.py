from hypothesis import given
from hypothesis import strategies as st

from qastream_shared.outbox import pack_headers, unpack_headers


@given(st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=64)), max_size=12))
def test_any_header_bytes_survive_the_outbox(headers):
    assert unpack_headers(pack_headers(headers)) == headers
