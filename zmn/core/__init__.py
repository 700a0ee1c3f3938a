"""Machinery shared by every service: database, bus, services, flows, queues, jobs, query."""
