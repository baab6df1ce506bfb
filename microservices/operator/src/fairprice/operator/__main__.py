"""``fairprice-operator``: MarketFeed objects into the feeds KV bucket, latest values into their
status."""

from fairprice.operator.service import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
