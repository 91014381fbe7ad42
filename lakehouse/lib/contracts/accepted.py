"""Accepted values the Silver contracts enforce. The demo generator (lakehouse.dev) draws from the same lists,
so its good records pass and its injected bad ones do not."""

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK")
CATEGORIES = ("books", "electronics", "garden", "home", "sports", "toys", "beauty", "grocery")
TICKET_STATUSES = ("open", "pending", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
CUSTOMER_ID = r"C[0-9]{7}"  # the CRM's customer ids (C0001234): what erasure looks for in raw text
