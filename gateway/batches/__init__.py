"""The OpenAI Batch API served by the gateway: files (files.py), durable batches with leases (jobs.py), the
worker that fills the headroom interactive traffic leaves (worker.py, runner.py), and `gateway batches`."""
