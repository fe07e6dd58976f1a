"""The review workflow's SQL: each module reads and writes its resource's tables inside the caller's unit of
work and publishes through its outbox. HTTP and the pure rules live elsewhere (api/, workflow/)."""
