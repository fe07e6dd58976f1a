"""The human review workflow's domain, as pure functions: no SQL, no HTTP, no Kafka."""
