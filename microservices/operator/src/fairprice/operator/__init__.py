"""fairprice operator service."""
