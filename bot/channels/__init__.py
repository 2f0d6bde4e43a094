"""Channel adapters: each turns platform events into Inbound and delivers outbox payloads."""
