"""orgs: users, organizations, memberships and personal access tokens."""
