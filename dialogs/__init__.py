"""Conversations, channel-neutral: the engine and one module per dialog."""
