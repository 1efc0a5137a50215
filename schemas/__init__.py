"""Pydantic models shared by every layer: no I/O, no project imports.

Workflows carry these models through Temporal history, so they hold ids and free text only,
never a person's name or e-mail address (those stay in the directory).
"""
