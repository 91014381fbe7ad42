"""Data contracts (pandera models) for the Bronze and Silver tables; lakehouse.catalog says which table has which."""
