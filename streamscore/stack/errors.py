class StackError(Exception):
    """A stack operation failed for a reason the user can act on; the message says which."""
