"""Everything that runs: channels, delivery, the care rules, configuration, the CLI and wiring."""
