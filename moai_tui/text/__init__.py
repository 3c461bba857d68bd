"""Plain-text output compatible with the MoAI tools. Never imports textual or rich."""
