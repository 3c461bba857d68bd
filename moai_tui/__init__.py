"""moai-tui: watch and size a GPU cluster shown as one MoAI accelerator."""

__version__ = "0.1.0"
