"""Sinks: where plans go — letters, task lists, worklist, FHIR. No clinical decisions here."""
