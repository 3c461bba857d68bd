"""The MoAI tools' own messages (moreh-cli.md), word for word: scripts compare them."""

SWITCHED = 'The MoAI Accelerator model is successfully switched to  "{name}".'
IN_USE = "The model cannot be switched while the MoAI Accelerator is in use."
RELEASE_OK = "Device release success."
RELEASE_NONE = "Device release failed. (Not running job.)"
CREATE_OK = "Create device success."
REMOVE_OK = "Remove device success."
CURRENT_OK = "Switch Current Device success."
NO_RESOURCES = (
    "Not enough resources are currently available. "
    "The program will resume automatically when resources become available..."
)
BUSY = (
    "Two or more processes cannot use MoAI Accelerator at the same time. "
    "The program will resume automatically after the process {pid} terminates..."
)
