"""Small rules for reading what users type."""


def is_number(text: str) -> bool:
    """Whole number in ASCII digits. str.isdigit() alone accepts '¹' or '٣', which int()
    rejects or reads unexpectedly."""
    return text.isascii() and text.isdigit()
