"""The dispatch_due_triggers task (see app/dispatch.py)."""
