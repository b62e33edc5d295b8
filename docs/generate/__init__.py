"""Helpers the pages' code blocks call while the site is built (not pages themselves)."""
