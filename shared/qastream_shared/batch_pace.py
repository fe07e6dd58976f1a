"""How many records a consumer's next batch may take: the batch size, and a latency cap.

Below a backlog a batch is what has arrived, and the cap never binds. With a backlog, a batch of the full
size can hold its records for seconds (scoring: 255 records in 495 ms at a held 500/s); the cap takes no
more than the recent pace processes in `consumer_batch_target_ms`, so the backlog is worked off in batches
that commit sooner. The pace (seconds per record, processing and commit) includes each batch's fixed costs,
so capped batches settle where one takes about the target: n = (target - fixed) / per-record cost.
"""

from __future__ import annotations

import statistics
from collections import deque

from qastream_shared.settings import Settings

# The pace is the median of the latest batches': one slow batch (a database stall) does not shrink the next
# ones to a few records, whose fixed costs would then dominate.
RECENT = 5
MIN_CAPPED_BATCH = 16


class BatchPace:
    def __init__(self, settings: Settings) -> None:
        self.size = settings.consumer_batch_size
        self.target_s = settings.consumer_batch_target_ms / 1000
        self.recent: deque[float] = deque(maxlen=RECENT)  # seconds per record of the latest batches

    def limit(self) -> int:
        if not self.target_s or not self.recent:
            return self.size
        pace = statistics.median(self.recent)
        return max(min(self.size, MIN_CAPPED_BATCH), min(self.size, int(self.target_s / pace)))

    def batch_took(self, seconds: float, records: int) -> None:
        self.recent.append(seconds / records)
