"""Migration tasks and restores: the task use-cases (`service`), the executor seam
(`executor`) and its process-per-unit implementation (`runner`, `worker`), and the jobs
that run in it (`job`, `restore`); backups, taken in threads of the service (`backups`)."""
