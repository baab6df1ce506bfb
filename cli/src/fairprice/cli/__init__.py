"""The `fairprice` command for people: run, demo, top, status, replay."""
