"""The qastream event contract: `events` (models, encode/decode), `topics` (names), `conversation`, `scorecard`."""
