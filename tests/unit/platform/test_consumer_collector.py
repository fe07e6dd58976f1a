import gc

from qastream_shared.collector import collector_paused


def test_the_collector_is_paused_while_any_consumer_of_the_process_is_inside_a_batch():
    assert gc.isenabled()
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    assert not gc.isenabled()
    second.__enter__()
    first.__exit__(None, None, None)  # the other consumer's batch is still running
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
