"""fairprice crawler service."""
