"""Python 3.10 support: tomllib arrived in 3.11; tomli is the same parser."""

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["tomllib"]
