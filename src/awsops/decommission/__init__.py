"""Safe decommissioning of long-stopped EC2 instances: plan, apply, journal, resume."""
