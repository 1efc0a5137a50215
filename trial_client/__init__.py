"""The client side of trials: start them after checking the directory, send commands, read views.

The API, the CLI and the tests all go through here, so refusals map to the same errors everywhere.
"""
