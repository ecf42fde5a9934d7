"""Check-in lists of an event (issue 16): the management API."""
