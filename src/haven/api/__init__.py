"""The REST API: Masakari v1 resources and haven's own, behind token authentication."""
