"""The one error type for bad input, shown to users as a single line (CLI exit 2, ``st.error``)."""


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix in one line."""
