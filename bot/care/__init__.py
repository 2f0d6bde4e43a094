"""The care rules: occasions, program policy, the planner and reminders."""
