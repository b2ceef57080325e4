"""billing: plans, subscriptions, invoices, payments."""
