"""Check layer: whole-pathway semantic rules, each problem a positioned Diagnostic."""
