"""Serving Gold to applications: a Postgres serving store synced from Gold (assets `serve/*`) and a
read API over it (`lakehouse serve`)."""
