"""Identifier types: directory ids are short slugs so they are safe in URLs, logs and history."""

from typing import Annotated

from pydantic import StringConstraints

SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
PersonId = Slug
UnitId = Slug
OrganisationId = Slug
