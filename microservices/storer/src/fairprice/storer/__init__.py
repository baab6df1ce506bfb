"""fairprice storer service."""
