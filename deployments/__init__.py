"""Where the product runs as a service: server setup for prefect.yaml's work pools (see README.md here)."""
