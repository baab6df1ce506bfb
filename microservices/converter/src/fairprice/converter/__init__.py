"""fairprice converter service."""
