"""The Textual dashboard. Only `moai-tui` (no subcommand) and the terminal picker import this."""
