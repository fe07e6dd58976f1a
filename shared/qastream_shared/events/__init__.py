"""Re-exported from the `qastream-events` package, the one definition platform teams depend on too."""

from qastream_events.envelope import *  # noqa: F403
from qastream_events.events import *  # noqa: F403
